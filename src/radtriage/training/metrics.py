"""Metrics with bootstrap 95% confidence intervals, for cards and `radtriage validate`."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from monai.metrics import compute_roc_auc


def auc(y_true: np.ndarray, score: np.ndarray) -> float:
    """Area under the ROC curve (MONAI's implementation)."""
    return float(compute_roc_auc(torch.as_tensor(score, dtype=torch.float32),
                                 torch.as_tensor(y_true, dtype=torch.float32)))


def confusion(y_true: np.ndarray, score: np.ndarray, threshold: float) -> dict[str, float]:
    y = np.asarray(y_true).astype(bool)
    p = np.asarray(score) >= threshold
    tp, tn = int(np.sum(p & y)), int(np.sum(~p & ~y))
    fp, fn = int(np.sum(p & ~y)), int(np.sum(~p & y))

    def ratio(a: int, b: int) -> float:
        return a / b if b else float("nan")

    return {
        "sensitivity": ratio(tp, tp + fn),
        "specificity": ratio(tn, tn + fp),
        "ppv": ratio(tp, tp + fp),
        "npv": ratio(tn, tn + fn),
        "tp": tp, "tn": tn, "fp": fp, "fn": fn,
    }


def bootstrap_ci(
    metric: Callable[[np.ndarray], float], n: int, rounds: int = 1000, seed: int = 0
) -> tuple[float, float]:
    """95% percentile interval of ``metric(indices)`` over resamples of ``n`` cases."""
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(rounds):
        idx = rng.integers(0, n, n)
        try:
            v = metric(idx)
        except (ValueError, ZeroDivisionError):
            continue
        if np.isfinite(v):
            values.append(v)
    if not values:
        return float("nan"), float("nan")
    lo, hi = np.percentile(values, [2.5, 97.5])
    return float(lo), float(hi)


def binary_report(y_true: np.ndarray, score: np.ndarray, threshold: float, rounds: int = 1000) -> dict:
    """AUC, sensitivity, specificity, PPV, NPV at ``threshold``, each with a 95% CI."""
    y, s = np.asarray(y_true).astype(int), np.asarray(score, dtype=float)
    out: dict = {"n": int(len(y)), "positives": int(y.sum()), "threshold": threshold}

    def with_ci(name: str, fn: Callable[[np.ndarray], float]) -> None:
        out[name] = {"value": fn(np.arange(len(y))), "ci95": list(bootstrap_ci(fn, len(y), rounds))}

    def safe_auc(i: np.ndarray) -> float:
        if y[i].min() == y[i].max():
            return float("nan")
        return auc(y[i], s[i])

    with_ci("auc", safe_auc)
    for key in ("sensitivity", "specificity", "ppv", "npv"):
        with_ci(key, lambda i, k=key: confusion(y[i], s[i], threshold)[k])
    return out


def threshold_for_sensitivity(y_true: np.ndarray, score: np.ndarray, target: float = 0.95) -> float:
    """The highest threshold whose sensitivity is at least ``target`` (for triage)."""
    y, s = np.asarray(y_true).astype(bool), np.asarray(score, dtype=float)
    pos = np.sort(s[y])[::-1]
    if len(pos) == 0:
        return 0.5
    k = int(np.ceil(target * len(pos))) - 1
    return float(pos[min(max(k, 0), len(pos) - 1)])


def regression_report(y_true: np.ndarray, y_pred: np.ndarray, rounds: int = 1000) -> dict:
    """MAE and RMSE (with 95% CIs) and the Bland-Altman bias and limits."""
    t, p = np.asarray(y_true, dtype=float), np.asarray(y_pred, dtype=float)
    d = p - t
    out: dict = {"n": int(len(t))}
    for name, fn in (
        ("mae", lambda i: float(np.mean(np.abs(d[i])))),
        ("rmse", lambda i: float(np.sqrt(np.mean(d[i] ** 2)))),
    ):
        out[name] = {"value": fn(np.arange(len(t))), "ci95": list(bootstrap_ci(fn, len(t), rounds))}
    bias, sd = float(np.mean(d)), float(np.std(d, ddof=1)) if len(d) > 1 else 0.0
    out["bland_altman"] = {"bias": bias, "lower": bias - 1.96 * sd, "upper": bias + 1.96 * sd}
    return out
