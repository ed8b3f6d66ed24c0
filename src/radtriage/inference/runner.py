"""One pipeline on one series, in-process: files -> Volume -> preprocess ops -> model -> postprocess ops -> result.

`TaskRunner` holds a pipeline's model (loaded once, card checked) and its
op chain (`radtriage.inference.ops`: the spec's ``preprocess`` and
``postprocess`` ops bound to their parameters, checked against the card) and
runs them on the instance files of a series. The Ray Serve deployments
(`radtriage.serving`) wrap the same class, so the pipeline logic runs and is
tested without Ray.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pydicom

from radtriage.domain.case import Finding, TaskResult
from radtriage.imaging.series import load_series
from radtriage.imaging.volume import Volume
from radtriage.inference import guard
from radtriage.inference.model import load_model
from radtriage.inference.ops import KeyView, OpContext
from radtriage.inference.tasks import OPS
from radtriage.pipelines import PipelineSpec


class PipelineError(RuntimeError):
    """A pipeline that cannot run on its series (bad pixels, wrong kind of image, model failure)."""


class OutsideValidatedRange(PipelineError):
    """A series outside the model's validated range (`guard`): no result, and not a failure to retry."""

    def __init__(self, failures: list[str]) -> None:
        self.failures = failures
        super().__init__("AI not applicable: outside the model's validated range (" + "; ".join(failures) + ")")


def _ms(t0: float, t1: float) -> float:
    return round((t1 - t0) * 1000, 1)


def _stage(failure: str, run: Callable[..., None], *args: Any) -> None:
    """One stage of a run; whatever it raises becomes a `PipelineError` saying which stage and why."""
    try:
        run(*args)
    except Exception as exc:  # noqa: BLE001 - a stage's failure is the job's reason, never a crash
        raise PipelineError(f"{failure}: {type(exc).__name__}: {exc}") from exc


class TaskRunner:
    def __init__(self, spec: PipelineSpec, models_dir: Path, threads: int = 2, gpus: float = 0.0) -> None:
        self.spec = spec
        self.model = load_model(Path(models_dir) / spec.model, threads=threads, gpus=gpus)
        card = self.model.card
        if card.task != spec.task:
            raise PipelineError(f"pipeline {spec.id}: model {spec.model} is for task {card.task}, not {spec.task}")
        try:
            self.chain = OPS.chain(spec.task, [(o.op, o.params) for o in spec.preprocess],
                                   [(o.op, o.params) for o in spec.postprocess])
        except ValueError as exc:
            raise PipelineError(f"pipeline {spec.id}: {exc}") from exc
        problems = self.chain.card_problems(card) + guard.card_problems(card)
        if problems:
            raise PipelineError(f"pipeline {spec.id}: " + "; ".join(problems))
        self.thresholds = {**card.thresholds, **spec.thresholds}  # the site's operating points over the card's

    def threshold(self, name: str, default: float) -> float:
        return float(self.thresholds.get(name, default))

    def run(self, instances: Sequence[str | Path | pydicom.Dataset], key_image_dir: Path | None = None) -> TaskResult:
        """The pipeline on one series: its instance files, or its datasets already read (`serving.transport`)."""
        t0 = time.perf_counter()
        try:
            volume = load_series([p if isinstance(p, pydicom.Dataset) else Path(p) for p in instances])
        except Exception as exc:  # noqa: BLE001 - any unreadable series becomes a reason, not a crash
            raise PipelineError(f"series could not be read: {exc}") from exc
        outside: list[str] = []
        _stage("input guard failed", lambda: outside.extend(guard.failures(self.model.card, volume)))
        if outside:
            raise OutsideValidatedRange(outside)
        ctx = OpContext(volume, self.model.input_names, self.thresholds)
        t1 = time.perf_counter()
        _stage("pre-processing failed", self.chain.run_preprocess, ctx)
        t2 = time.perf_counter()
        _stage(f"model {self.spec.model} failed", self.chain.infer, self.model, ctx)
        t3 = time.perf_counter()
        _stage("post-processing failed", self.chain.run_postprocess, ctx)
        found = list(ctx.findings)
        if key_image_dir is not None:
            found = [self._key_image(f, view, volume, key_image_dir, i) if view is not None else f
                     for i, (f, view) in enumerate(zip(ctx.findings, ctx.views, strict=True))]
        t4 = time.perf_counter()
        for flag in volume.flags:
            found.append(Finding(code=f"series:{flag}", text=f"series {flag.replace('-', ' ')}"))
        card = self.model.card
        return TaskResult(
            task=self.spec.task, model_id=card.id, model_version=card.version, pipeline_version=self.spec.version,
            positive=bool(ctx.positive), scores=ctx.scores, labels=ctx.labels, findings=tuple(found),
            timings_ms={"load": _ms(t0, t1), "preprocess": _ms(t1, t2), "inference": _ms(t2, t3),
                        "postprocess": _ms(t3, t4)},
            provider=getattr(self.model, "provider", None),
        )

    def _key_image(self, finding: Finding, view: KeyView, volume: Volume, folder: Path, i: int) -> Finding:
        try:
            from radtriage.imaging.keyimage import render_key_image
        except ImportError:
            return finding
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{self.spec.id}-{i}.png"
        try:
            render_key_image(volume, label=finding.text, path=path, slice_index=view.slice_index, box=view.box,
                             window=view.window)
        except Exception:  # noqa: BLE001 - a key image is an aid; its failure never loses the result
            return finding
        return finding.model_copy(update={"key_image": str(path)})
