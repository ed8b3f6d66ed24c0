"""One pipeline on one series, in-process: files -> Volume -> model -> findings -> `TaskResult`.

`TaskRunner` holds a pipeline's model (loaded once, card checked) and runs it
on the instance files of a series. The Ray Serve deployments (`radtriage.serving`)
wrap the same class, so the pipeline logic runs and is tested without Ray.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Protocol

from radtriage.domain.case import Finding, TaskResult
from radtriage.imaging.volume import Volume, load_series
from radtriage.inference import findings as fx
from radtriage.inference.model import load_model
from radtriage.inference.tasks import predictor

KEY_IMAGE_WORDS = "AI result - not for diagnosis"


class PipelineLike(Protocol):
    id: str
    version: str
    task: str
    model: str
    thresholds: dict[str, float]


class PipelineError(RuntimeError):
    """A pipeline that cannot run on its series (bad pixels, wrong kind of image, model failure)."""


def _ms(t0: float, t1: float) -> float:
    return round((t1 - t0) * 1000, 1)


class TaskRunner:
    def __init__(self, spec: PipelineLike, models_dir: Path, threads: int = 2) -> None:
        self.spec = spec
        self.model = load_model(Path(models_dir) / spec.model, threads=threads)
        if self.model.card.task != spec.task:
            raise PipelineError(f"pipeline {spec.id}: model {spec.model} is for task {self.model.card.task}, not {spec.task}")
        self.predict = predictor(spec.task)

    def threshold(self, name: str, default: float) -> float:
        return float(self.spec.thresholds.get(name, self.model.card.thresholds.get(name, default)))

    def run(self, paths: list[str], key_image_dir: Path | None = None) -> TaskResult:
        t0 = time.perf_counter()
        try:
            volume = load_series([Path(p) for p in paths])
        except Exception as exc:  # noqa: BLE001 - any unreadable series becomes a reason, not a crash
            raise PipelineError(f"series could not be read: {exc}") from exc
        t1 = time.perf_counter()
        try:
            pred = self.predict(self.model, volume)
        except Exception as exc:  # noqa: BLE001
            raise PipelineError(f"model {self.spec.model} failed: {type(exc).__name__}: {exc}") from exc
        t2 = time.perf_counter()
        positive, scores, labels, found = self._findings(pred, volume)
        if key_image_dir is not None:
            found = [self._key_image(f, pred, volume, key_image_dir, i) for i, f in enumerate(found)]
        t3 = time.perf_counter()
        for flag in volume.flags:
            found.append(Finding(code=f"series:{flag}", text=f"series {flag.replace('-', ' ')}"))
        card = self.model.card
        return TaskResult(
            task=self.spec.task, model_id=card.id, model_version=card.version, pipeline_version=self.spec.version,
            positive=positive, scores=scores, labels=labels, findings=tuple(found),
            timings_ms={"load": _ms(t0, t1), "inference": _ms(t1, t2), "postprocess": _ms(t2, t3)},
        )

    def _findings(self, pred: dict[str, Any], volume: Volume
                  ) -> tuple[bool, dict[str, float], dict[str, str], list[Finding]]:
        """positive, scores, labels and findings of a prediction; the spec's thresholds override the card's."""
        task = self.spec.task
        if task == "ich":
            thr = self.threshold("any", 0.5)
            pred = {**pred, "positive": pred["score"] >= thr}
            return (pred["positive"], {"ich": pred["score"], "threshold": thr}, {"subtype": pred["subtype"]},
                    fx.ich_findings(pred, volume, thr))
        if task == "lvo":
            thr = self.threshold("lvo", 0.5)
            pred = {**pred, "positive": pred["score"] >= thr}
            return (pred["positive"], {"lvo": pred["score"], "threshold": thr},
                    {"side": str(pred["side"]), "segment": str(pred["segment"])}, fx.lvo_findings(pred))
        if task == "nodule":
            found = fx.nodule_findings(pred, self.threshold("nodule", 0.5))
            best = max((n["score"] for n in pred["nodules"]), default=0.0)
            return bool(found), {"nodule": best, "nodules": float(len(found))}, {"lung_rads": fx.scan_lung_rads(found)}, found
        found = fx.bone_age_findings(pred)
        m = found[0].measurements
        scores = {"bone_age_months": pred["bone_age_months"]}
        if "z_score" in m:
            scores.update(bone_age_z=m["z_score"], difference_months=m["difference_months"],
                          chronological_age_months=m["chronological_age_months"])
        return found[0].code == "bone_age_flag", scores, {"sex": pred["sex"]}, found

    def _key_image(self, finding: Finding, pred: dict[str, Any], volume: Volume, folder: Path, i: int) -> Finding:
        try:
            from radtriage.imaging.keyimage import render_key_image
        except ImportError:
            return finding
        kwargs: dict[str, Any] = {}
        if volume.is_2d:
            kwargs["window"] = None
        elif self.spec.task == "ich":
            kwargs.update(slice_index=int(pred["key_slice"]), window=(40.0, 80.0))
        elif self.spec.task == "nodule":
            m = finding.measurements
            z, y, x = volume.lps_to_voxel([m["x_mm"], m["y_mm"], m["z_mm"]])
            r = m["longest_diameter_mm"] / 2 / volume.spacing[1] + 3
            kwargs.update(slice_index=int(round(z)), box=(y - r, y + r, x - r, x + r), window=(-600.0, 1500.0))
        else:  # lvo: the slab with most contrast
            kwargs.update(slice_index=int(volume.array.reshape(len(volume.array), -1).max(axis=1).argmax()),
                          window=(200.0, 600.0))
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{self.spec.id}-{i}.png"
        try:
            render_key_image(volume, label=finding.text, path=path, **kwargs)
        except Exception:  # noqa: BLE001 - a key image is an aid; its failure never loses the result
            return finding
        return finding.model_copy(update={"key_image": str(path)})
