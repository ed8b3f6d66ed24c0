"""Run a model over a labelled dataset and write ``metrics.json`` and ``report.html``.

The thin, impure half of `radtriage validate`: find and check the model
folder, list the dataset's examples (`radtriage.datasets.layouts`: the
synthetic layout or a public one), load each volume, run the task's
predictor and time it, then hand labels, predictions and groups to
`radtriage.validation.evaluate` and the results to
`radtriage.validation.report`. Each loaded case first passes the input guard
(`radtriage.inference.guard`) as on the live path: a case outside the model's
validated range is listed under ``refused`` and counted (``n_refused``), not
measured. A case whose image cannot be read or run is listed under ``failed``
and left out of the metrics; nothing is written outside the output folder.
Studies already stored in radtriage are validated from a truth CSV by
`radtriage.validation.site`, through `finish`, into the same document.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

import radtriage
from radtriage.datasets import Example
from radtriage.inference import guard
from radtriage.inference.card import CARD_FILE, ModelCard, ModelCardError
from radtriage.validation.evaluate import TARGET_SENSITIVITY

log = logging.getLogger(__name__)

DISCLAIMER = "research and demonstration; not for clinical use"
THRESHOLD_KEYS = {"ich": "any", "lvo": "lvo", "nodule": "nodule"}  # the keys the training scripts write


class ValidationError(Exception):
    """A validation that cannot run (unknown model, bad card, empty dataset...); the message is one line."""


@dataclass
class CaseResult:
    id: str
    label: dict[str, Any]
    groups: dict[str, str]
    prediction: dict[str, Any] | None = None
    seconds: float | None = None
    error: str | None = None
    refused: str | None = None  # outside the model's validated range (the input guard's reason)

    @property
    def measured(self) -> bool:
        return self.error is None and self.refused is None


@dataclass
class Validation:
    out: Path
    metrics_path: Path
    report_path: Path
    document: dict[str, Any] = field(repr=False)


# --------------------------------------------------------------------------- model, examples


def model_folder(model: str, models_dir: Path) -> Path:
    """``model`` as a folder holding ``model.yaml``, else ``models_dir/model``."""
    as_path = Path(model)
    if (as_path / CARD_FILE).is_file():
        return as_path
    folder = Path(models_dir) / model
    if (folder / CARD_FILE).is_file():
        return folder
    known = sorted(p.parent.name for p in Path(models_dir).glob(f"*/{CARD_FILE}")) if Path(models_dir).is_dir() else []
    raise ValidationError(f"unknown model {model!r}: no {CARD_FILE} in {as_path} or {folder}"
                          + (f" (known: {', '.join(known)})" if known else f" ({models_dir} holds no models)"))


def load_model(folder: Path, threads: int = 2):
    from radtriage.inference.model import load_model as load_runner

    try:
        return load_runner(folder, threads)
    except ModelCardError as exc:
        raise ValidationError(f"model card check failed: {exc}") from exc
    except Exception as exc:  # onnxruntime's own errors on a corrupt file
        raise ValidationError(f"cannot load model {folder}: {type(exc).__name__}: {str(exc).splitlines()[0]}") from exc


def task_predictor(task: str) -> Callable:
    from radtriage.inference.tasks import predictor

    try:
        return predictor(task)
    except (KeyError, ImportError) as exc:
        raise ValidationError(f"no predictor for task {task!r}: {exc}") from exc


def examples(root: Path, task: str, layout: str | None = None) -> Iterator[Example]:
    """The dataset's examples of ``task``, read by the named or detected layout (`radtriage.datasets.layouts`)."""
    from radtriage.datasets import layouts

    root = Path(root)
    if not root.is_dir():
        raise ValidationError(f"dataset folder not found: {root}")
    try:
        return layouts.examples(root, task, layout=layout)
    except (ValueError, KeyError, OSError) as exc:
        raise ValidationError(f"dataset {exc}" if str(exc).startswith(str(root)) else f"dataset {root}: {exc}") from exc


def operating_threshold(card: ModelCard, override: float | None = None) -> float | None:
    """The threshold validated at: ``override``, else the card's for the task (None for bone age)."""
    if override is not None:
        return float(override)
    if card.task == "bone_age":
        return None
    key = THRESHOLD_KEYS.get(card.task)
    if key in card.thresholds:
        return float(card.thresholds[key])
    if len(card.thresholds) == 1:
        return float(next(iter(card.thresholds.values())))
    if card.task == "nodule":
        return None  # FROC needs none; no operating point reported
    return 0.5


# --------------------------------------------------------------------------- per-case summaries


def _num(v: Any, digits: int = 4) -> Any:
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    if isinstance(v, (int, np.integer)):
        return int(v)
    if isinstance(v, (float, np.floating)):
        return round(float(v), digits)
    return v


def label_summary(task: str, label: dict[str, Any]) -> dict[str, Any]:
    """What metrics.json keeps of a label (ICH slice labels left out)."""
    if task == "ich":
        return {"positive": bool(label["positive"]), "subtypes": list(label.get("subtypes") or [])}
    if task == "lvo":
        return {k: _num(label.get(k)) for k in ("positive", "side", "segment")}
    if task == "nodule":
        return {"nodules": [{"centre_mm": [_num(c, 2) for c in n["centre_mm"]],
                             "diameter_mm": _num(n["diameter_mm"], 2), "type": n.get("type")}
                            for n in label.get("nodules", [])]}
    return {k: _num(label.get(k), 2) for k in ("bone_age_months", "sex", "chronological_age_months")}


def prediction_summary(task: str, pred: dict[str, Any]) -> dict[str, Any]:
    """What metrics.json keeps of a prediction: the values the metrics read (no per-slice lists)."""
    if task == "ich":
        return {k: _num(pred.get(k)) for k in ("score", "positive", "subtype")}
    if task == "lvo":
        return {k: _num(pred.get(k)) for k in ("score", "positive", "side", "segment")}
    if task == "nodule":
        return {"nodules": [{"centre_mm": [_num(c, 2) for c in n["centre_mm"]],
                             "diameter_mm": _num(n.get("diameter_mm"), 2), "score": _num(n["score"])}
                            for n in pred.get("nodules", [])]}
    return {"bone_age_months": _num(pred.get("bone_age_months"), 2)}


def jsonable(obj: Any) -> Any:
    """Plain JSON types; NaN and infinities become null."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return jsonable(obj.tolist())
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return float(obj) if math.isfinite(obj) else None
    if obj is None or isinstance(obj, str):
        return obj
    return str(obj)


# --------------------------------------------------------------------------- run


def predict_cases(model: Any, predict: Callable, cases: Iterable[Example], limit: int | None = None,
                  progress: Callable[[int, CaseResult], None] | None = None,
                  check_range: bool = True) -> list[CaseResult]:
    """Load, guard and predict each example (at most ``limit``), timing the prediction; refusals by the input
    guard and failures are kept, not raised."""
    results: list[CaseResult] = []
    for ex in cases:
        if limit is not None and len(results) >= limit:
            break
        r = CaseResult(id=ex.id, label=ex.label, groups=dict(ex.groups))
        try:
            volume = ex.load()
            outside = guard.failures(model.card, volume) if check_range else []
            if outside:
                from radtriage.inference.runner import OutsideValidatedRange  # torch: only when validating

                r.refused = str(OutsideValidatedRange(outside))
            else:
                t0 = time.perf_counter()
                r.prediction = predict(model, volume)
                r.seconds = time.perf_counter() - t0
        except Exception as exc:  # one unreadable case must not end a validation run
            r.error = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:300]
            log.warning("validation case %s failed: %s", ex.id, type(exc).__name__)
        results.append(r)
        if progress:
            progress(len(results), r)
    return results


def timing(seconds: list[float]) -> dict[str, Any]:
    if not seconds:
        return {"n": 0}
    s = np.asarray(seconds)
    return {"n": len(s), "mean_s": float(s.mean()), "median_s": float(np.median(s)),
            "p95_s": float(np.percentile(s, 95)), "max_s": float(s.max()), "total_s": float(s.sum())}


def build_document(card: ModelCard, model_dir: Path, dataset: Path | None, layout: str | None,
                   threshold: float | None, rounds: int, results: list[CaseResult], evaluation: dict[str, Any],
                   source: dict[str, Any] | None = None) -> dict[str, Any]:
    """The metrics.json document; ``source`` (what the cases are) replaces the dataset folder and layout for
    cases that are not a dataset folder (stored studies, a silent trial's reads)."""
    ok = [r for r in results if r.measured]
    return jsonable({
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "radtriage_version": radtriage.__version__,
        "disclaimer": DISCLAIMER,
        "model": {"id": card.id, "version": card.version, "task": card.task, "folder": str(model_dir),
                  "sha256": card.sha256, "architecture": card.architecture, "intended_use": card.intended_use,
                  "not_for": card.not_for, "training_data": card.training_data},
        "dataset": source or {"path": str(dataset), "layout": layout or "auto", "kind": "retrospective"},
        "task": card.task,
        "n": len(ok),
        "n_failed": sum(r.error is not None for r in results),
        "n_refused": sum(r.refused is not None for r in results),
        "threshold": threshold,
        "bootstrap_rounds": rounds,
        "metrics": evaluation["metrics"],
        "subgroups": evaluation["subgroups"],
        "timing": timing([r.seconds for r in ok if r.seconds is not None]),
        "failed": [{"id": r.id, "error": r.error} for r in results if r.error is not None],
        "refused": [{"id": r.id, "reason": r.refused} for r in results if r.refused is not None],
        "cases": [{"id": r.id, "label": label_summary(card.task, r.label),
                   "prediction": prediction_summary(card.task, r.prediction),
                   "groups": r.groups, "seconds": round(r.seconds, 4) if r.seconds is not None else None}
                  for r in ok],
    })


def validate(model: str, dataset: Path, *, layout: str | None = None, models_dir: Path = Path("models"),
             out: Path | None = None, threads: int = 2, limit: int | None = None, rounds: int = 1000,
             threshold: float | None = None, predict: Callable | None = None,
             progress: Callable[[int, CaseResult], None] | None = None,
             target_sensitivity: float = TARGET_SENSITIVITY) -> Validation:
    """Validate ``model`` (an id under ``models_dir`` or a folder) on ``dataset``; write the two files under ``out``."""
    dataset = Path(dataset)
    folder = model_folder(model, models_dir)
    net = load_model(folder, threads)
    card: ModelCard = net.card
    predict = predict or task_predictor(card.task)
    cases = examples(dataset, card.task, layout)
    results = predict_cases(net, predict, cases, limit, progress)
    if not results:
        raise ValidationError(f"no {card.task} cases in {dataset} (layout {layout or 'auto'}); "
                              f"is it a dataset for a {card.task} model?")
    return finish(card, folder, results, Path(out) if out is not None else dataset / f"validation-{card.id}",
                  operating_threshold(card, threshold), rounds, target_sensitivity,
                  {"path": str(dataset), "layout": layout or "auto", "kind": "retrospective"})


def document(card: ModelCard, folder: Path, results: list[CaseResult], threshold: float | None, rounds: int,
             target_sensitivity: float, source: dict[str, Any]) -> dict[str, Any]:
    """The metrics.json document of cases already run (the one place their metrics are computed: `validate`,
    stored studies and a silent trial's reads all come here)."""
    from radtriage.validation.evaluate import evaluate

    ok = sorted((r for r in results if r.measured), key=lambda r: r.id)
    if not ok:
        first = next((r for r in results if not r.measured), None)
        raise ValidationError(f"no case could be measured ({len(results)} cases)"
                              + (f"; first: {first.id}: {first.error or first.refused}" if first else ""))
    evaluation = evaluate(card.task, [r.label for r in ok], [r.prediction for r in ok], [r.groups for r in ok],
                          threshold, rounds, target_sensitivity)
    doc = build_document(card, folder, None, None, threshold, rounds,
                         ok + [r for r in results if not r.measured], evaluation, source)
    doc["target_sensitivity"] = target_sensitivity
    return doc


def finish(card: ModelCard, folder: Path, results: list[CaseResult], out: Path, threshold: float | None,
           rounds: int, target_sensitivity: float, source: dict[str, Any]) -> Validation:
    """Measure the cases and write ``metrics.json`` and ``report.html`` under ``out``."""
    from radtriage.validation.report import write_report

    doc = document(card, folder, results, threshold, rounds, target_sensitivity, source)
    out.mkdir(parents=True, exist_ok=True)
    metrics_path = out / "metrics.json"
    metrics_path.write_text(json.dumps(doc, indent=2, allow_nan=False))
    report_path = write_report(out / "report.html", doc)
    return Validation(out=out, metrics_path=metrics_path, report_path=report_path, document=doc)
