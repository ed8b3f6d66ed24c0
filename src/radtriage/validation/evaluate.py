"""Validation metrics of one task: a pure function of labels, predictions, groups and a threshold.

`evaluate(task, labels, predictions, groups, threshold)` gives the task's
metrics and the same metrics per subgroup. Labels are the ``Example.label``
dicts (see `radtriage.datasets`), predictions the task predictors' dicts
(see `radtriage.inference.tasks`), one of each per case, in the same order.

- ``ich`` / ``lvo``: AUC, sensitivity, specificity, PPV and NPV of
  ``score >= threshold`` with bootstrap 95% CIs (`binary_report`); for ``lvo``
  also side and segment accuracy, for ``ich`` subtype accuracy (see
  `attribute_accuracy`); a calibration curve (`calibration`) and the site's
  operating point: the highest threshold that keeps the sensitivity at least
  ``target_sensitivity`` on these cases, and the specificity it gives
  (`operating_point`).
- ``nodule``: FROC and CPM (LUNA16: mean sensitivity at 1/8 ... 8 false
  positives per scan, `radtriage.training.metrics.froc`), nodules of at least
  ``NODULE_MIN_DIAMETER_MM``; the sensitivity and FP/scan at ``threshold``, and
  the operating point: the highest score threshold whose sensitivity is at least
  ``target_sensitivity``, and its FP/scan.
- ``bone_age``: MAE and RMSE in months with 95% CIs, the Bland-Altman bias and
  limits of agreement (`regression_report`).

Ratios with an empty denominator (no positives in a subgroup, say) are NaN;
`radtriage.validation.report` writes them as null.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from radtriage.training.metrics import (
    binary_report,
    bootstrap_ci,
    confusion,
    froc,
    regression_report,
    threshold_for_sensitivity,
)

GROUP_KEYS = ("sex", "age_band", "manufacturer", "scanner", "kernel", "slice_thickness")
TARGET_SENSITIVITY = 0.95
CALIBRATION_BINS = 10
NODULE_MIN_DIAMETER_MM = 4.0
BINARY_KEYS = ("auc", "sensitivity", "specificity", "ppv", "npv")
BINARY_TASKS = ("ich", "lvo")
TASKS = ("ich", "lvo", "nodule", "bone_age")

Labels = Sequence[dict[str, Any]]
Predictions = Sequence[dict[str, Any]]


def _with_ci(fn: Callable[[np.ndarray], float], n: int, rounds: int) -> dict[str, Any]:
    value = fn(np.arange(n)) if n else float("nan")
    ci = list(bootstrap_ci(fn, n, rounds)) if n and rounds > 0 else [float("nan"), float("nan")]
    return {"value": float(value), "ci95": ci}


def attribute_accuracy(truth: Sequence[Any], predicted: Sequence[Any], rounds: int = 1000) -> dict[str, Any]:
    """Fraction of cases whose predicted value is right, with a bootstrap 95% CI.

    ``truth[i]`` is the labelled value, or a set/list of acceptable values
    (an ICH study can hold several subtypes: naming any of them is right);
    cases whose truth is None or empty are not counted.
    """
    correct = []
    for t, p in zip(truth, predicted, strict=True):
        accepted = set(t) if isinstance(t, (list, tuple, set, frozenset)) else ({t} if t is not None else set())
        if accepted:
            correct.append(p in accepted)
    hits = np.asarray(correct, dtype=float)
    out = _with_ci(lambda i: float(np.mean(hits[i])), len(hits), rounds)
    out["n"] = len(hits)
    out["correct"] = int(hits.sum())
    return out


def roc_curve(y_true: Sequence[int], score: Sequence[float]) -> dict[str, list[float]]:
    """ROC points, one per distinct score (descending), from (0, 0) at threshold +inf to (1, 1)."""
    y, s = np.asarray(y_true).astype(bool), np.asarray(score, dtype=float)
    thr = np.concatenate([[np.inf], np.unique(s)[::-1]])
    pos, neg = np.sort(s[y]), np.sort(s[~y])
    tp = len(pos) - np.searchsorted(pos, thr, side="left")
    fp = len(neg) - np.searchsorted(neg, thr, side="left")
    return {"thresholds": thr.tolist(),
            "fpr": (fp / len(neg) if len(neg) else np.full(len(thr), np.nan)).tolist(),
            "tpr": (tp / len(pos) if len(pos) else np.full(len(thr), np.nan)).tolist()}


def binary_metrics(task: str, labels: Labels, predictions: Predictions, threshold: float,
                   rounds: int = 1000) -> dict[str, Any]:
    """`binary_report` of the study scores, plus the task's attribute accuracies.

    Side, segment (``lvo``) and subtype (``ich``) accuracy are measured on the
    true positives at ``threshold`` whose label names them: how often the
    model, having flagged a true occlusion or bleed, also says where or what.
    """
    y = np.array([bool(lab["positive"]) for lab in labels], dtype=int)
    s = np.array([float(p["score"]) for p in predictions], dtype=float)
    out = binary_report(y, s, threshold, rounds)
    out["counts"] = {k: v for k, v in confusion(y, s, threshold).items() if k in ("tp", "fp", "tn", "fn")}
    out["roc"] = roc_curve(y, s)
    tp = [i for i in range(len(y)) if y[i] and s[i] >= threshold]
    attrs = {"lvo": (("side", "side"), ("segment", "segment")), "ich": (("subtype", "subtypes"),)}[task]
    for pred_key, label_key in attrs:
        truth = [labels[i].get(label_key) for i in tp]
        if any(t for t in truth):
            out[f"{pred_key}_accuracy"] = attribute_accuracy(truth, [predictions[i].get(pred_key) for i in tp], rounds)
    return out


def calibration(y_true: Sequence[int], score: Sequence[float], bins: int = CALIBRATION_BINS) -> dict[str, Any]:
    """Observed fraction positive against the mean score in ``bins`` equal-width score bins (empty bins left
    out), and the Brier score."""
    y, s = np.asarray(y_true, dtype=float), np.clip(np.asarray(score, dtype=float), 0.0, 1.0)
    which = np.minimum((s * bins).astype(int), bins - 1)
    rows = [{"lower": b / bins, "upper": (b + 1) / bins, "n": int((which == b).sum()),
             "mean_score": float(s[which == b].mean()), "observed": float(y[which == b].mean())}
            for b in range(bins) if (which == b).any()]
    return {"bins": rows, "brier": float(np.mean((s - y) ** 2)) if len(y) else float("nan")}


def binary_operating_point(y_true: Sequence[int], score: Sequence[float], target: float,
                           rounds: int = 1000) -> dict[str, Any]:
    """The highest threshold whose sensitivity on these cases is at least ``target``, and the sensitivity and
    specificity it gives (bootstrap 95% CIs at that fixed threshold)."""
    y, s = np.asarray(y_true).astype(int), np.asarray(score, dtype=float)
    thr = threshold_for_sensitivity(y, s, target)
    out: dict[str, Any] = {"target_sensitivity": target, "threshold": thr}
    for key in ("sensitivity", "specificity"):
        out[key] = _with_ci(lambda i, k=key: confusion(y[i], s[i], thr)[k], len(y), rounds)
    out["counts"] = {k: v for k, v in confusion(y, s, thr).items() if k in ("tp", "fp", "tn", "fn")}
    return out


def nodule_operating_point(curve: dict[str, list[float]], target: float) -> dict[str, Any]:
    """The highest candidate-score threshold of a FROC curve whose sensitivity is at least ``target``."""
    sens, thr = np.asarray(curve["sensitivity"], dtype=float), np.asarray(curve["thresholds"], dtype=float)
    ok = np.nonzero((sens >= target) & np.isfinite(thr))[0]
    if not len(ok):
        return {"target_sensitivity": target, "threshold": None, "reached": False,
                "sensitivity": float(np.nanmax(sens)) if len(sens) else None}
    i = int(ok[0])
    return {"target_sensitivity": target, "threshold": float(thr[i]), "reached": True,
            "sensitivity": float(sens[i]), "fp_per_scan": float(curve["fp_per_scan"][i])}


def site_curves(task: str, labels: Labels, predictions: Predictions, metrics: dict[str, Any],
                target: float = TARGET_SENSITIVITY, rounds: int = 1000) -> dict[str, Any]:
    """What a site commissions on beyond the metrics at the card's threshold: the calibration curve and the
    operating point chosen on the site's own cases (none for bone age)."""
    if task in BINARY_TASKS:
        y = [int(bool(lab["positive"])) for lab in labels]
        s = [float(p["score"]) for p in predictions]
        return {"calibration": calibration(y, s), "operating_point": binary_operating_point(y, s, target, rounds)}
    if task == "nodule":
        return {"operating_point": nodule_operating_point(metrics["curve"], target)}
    return {}


def _operating_point(curve: dict[str, list[float]], threshold: float) -> tuple[float, float]:
    """(sensitivity, FP per scan) of the candidates scoring >= ``threshold``, read off a FROC curve."""
    thr = np.asarray(curve["thresholds"], dtype=float)  # descending, first +inf
    i = int(np.nonzero(thr >= threshold)[0][-1])
    return float(curve["sensitivity"][i]), float(curve["fp_per_scan"][i])


def nodule_metrics(labels: Labels, predictions: Predictions, threshold: float | None,
                   rounds: int = 1000, min_diameter_mm: float = NODULE_MIN_DIAMETER_MM) -> dict[str, Any]:
    """FROC/CPM over scans and, at ``threshold``, sensitivity and false positives per scan."""
    cases = [(lab.get("nodules", []), pred.get("nodules", [])) for lab, pred in zip(labels, predictions, strict=True)]
    out = froc(cases, min_diameter_mm=min_diameter_mm, rounds=rounds)
    out["n"] = len(cases)
    if threshold is not None:
        def at(idx: np.ndarray, k: int) -> float:
            return _operating_point(froc([cases[i] for i in idx], min_diameter_mm)["curve"], threshold)[k]

        out["threshold"] = threshold
        out["sensitivity_at_threshold"] = _with_ci(lambda i: at(i, 0), len(cases), rounds)
        out["fp_per_scan_at_threshold"] = _with_ci(lambda i: at(i, 1), len(cases), rounds)
    return out


def bone_age_metrics(labels: Labels, predictions: Predictions, rounds: int = 1000) -> dict[str, Any]:
    """`regression_report` of predicted against labelled bone age (months)."""
    t = np.array([float(lab["bone_age_months"]) for lab in labels], dtype=float)
    p = np.array([float(pred["bone_age_months"]) for pred in predictions], dtype=float)
    return regression_report(t, p, rounds) if len(t) else {"n": 0}


def task_metrics(task: str, labels: Labels, predictions: Predictions, threshold: float | None,
                 rounds: int = 1000) -> dict[str, Any]:
    if len(labels) != len(predictions):
        raise ValueError(f"{len(labels)} labels but {len(predictions)} predictions")
    if task in BINARY_TASKS:
        if threshold is None:
            raise ValueError(f"{task} needs an operating threshold")
        return binary_metrics(task, labels, predictions, threshold, rounds)
    if task == "nodule":
        return nodule_metrics(labels, predictions, threshold, rounds)
    if task == "bone_age":
        return bone_age_metrics(labels, predictions, rounds)
    raise ValueError(f"unknown task {task!r}; known: {', '.join(TASKS)}")


def main_metrics(task: str, metrics: dict[str, Any]) -> dict[str, Any]:
    """The few metrics a subgroup table shows (each ``{"value", "ci95"}`` or a number)."""
    if task in BINARY_TASKS:
        return {"positives": metrics["positives"], **{k: metrics[k] for k in BINARY_KEYS}}
    if task == "nodule":
        out = {"nodules": metrics["n_nodules"],
               "cpm": {"value": metrics["cpm"], "ci95": metrics.get("cpm_ci95", [float("nan")] * 2)}}
        for k in ("sensitivity_at_threshold", "fp_per_scan_at_threshold"):
            if k in metrics:
                out[k] = metrics[k]
        return out
    if metrics.get("n", 0) == 0:
        return {}
    return {"mae": metrics["mae"], "rmse": metrics["rmse"], "bias": metrics["bland_altman"]["bias"]}


def split(groups: Sequence[dict[str, str]], keys: Sequence[str] = GROUP_KEYS) -> dict[str, dict[str, list[int]]]:
    """Case indices per subgroup: ``{key: {value: [i, ...]}}``, values sorted; cases lacking a key go to "unknown".

    A key that no case has is left out.
    """
    out: dict[str, dict[str, list[int]]] = {}
    for key in keys:
        if not any(key in g for g in groups):
            continue
        by: dict[str, list[int]] = {}
        for i, g in enumerate(groups):
            by.setdefault(str(g.get(key) or "unknown"), []).append(i)
        out[key] = {v: by[v] for v in sorted(by, key=_group_order)}
    return out


def _group_order(value: str) -> tuple:
    """Natural order: "5-9" before "10-14", "1.25 mm" before "5 mm", "unknown" last."""
    head = value.split("-")[0].split(" ")[0].rstrip("+")
    try:
        return (0, float(head), value)
    except ValueError:
        return (1 if value != "unknown" else 2, 0.0, value)


def subgroups(task: str, labels: Labels, predictions: Predictions, groups: Sequence[dict[str, str]],
              threshold: float | None, rounds: int = 1000,
              keys: Sequence[str] = GROUP_KEYS) -> dict[str, dict[str, dict[str, Any]]]:
    """``{key: {value: {"n", main metrics...}}}`` for each subgroup key the cases have."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for key, values in split(groups, keys).items():
        out[key] = {}
        for value, idx in values.items():
            m = task_metrics(task, [labels[i] for i in idx], [predictions[i] for i in idx], threshold, rounds)
            out[key][value] = {"n": len(idx), **main_metrics(task, m)}
    return out


def evaluate(task: str, labels: Labels, predictions: Predictions, groups: Sequence[dict[str, str]] | None = None,
             threshold: float | None = None, rounds: int = 1000,
             target_sensitivity: float = TARGET_SENSITIVITY) -> dict[str, Any]:
    """``{"metrics": ..., "subgroups": ...}`` of one task's predictions against its labels."""
    groups = list(groups) if groups is not None else [{} for _ in labels]
    if not (len(labels) == len(predictions) == len(groups)):
        raise ValueError(f"{len(labels)} labels, {len(predictions)} predictions, {len(groups)} groups")
    if not labels:
        raise ValueError("no cases to evaluate")
    metrics = task_metrics(task, labels, predictions, threshold, rounds)
    metrics.update(site_curves(task, labels, predictions, metrics, target_sensitivity, rounds))
    return {"metrics": metrics, "subgroups": subgroups(task, labels, predictions, groups, threshold, rounds)}
