"""Metrics with bootstrap 95% confidence intervals, for cards and `radtriage validate`."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def auc(y_true: np.ndarray, score: np.ndarray) -> float:
    """Area under the ROC curve (MONAI's implementation)."""
    import torch  # here, not at import: the service reads evidence without loading torch (~300 MB)
    from monai.metrics import compute_roc_auc

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


# --------------------------------------------------------------------------- detection (FROC / CPM)

FROC_FP_RATES: tuple[float, ...] = (0.125, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0)


def _froc_points(cases: list, min_diameter_mm: float) -> tuple[np.ndarray, np.ndarray, int, int, int]:
    """Best hit score per counted nodule (-inf when never hit), FP scores, scans, nodules, hit nodules."""
    nodule_scores: list[float] = []
    fp_scores: list[float] = []
    for truth, candidates in cases:
        truth = list(truth or [])
        centres = np.array([t["centre_mm"] for t in truth], dtype=float).reshape(-1, 3)
        radii = np.array([float(t["diameter_mm"]) / 2 for t in truth], dtype=float)
        counted = np.array([float(t["diameter_mm"]) >= min_diameter_mm for t in truth], dtype=bool)
        best = np.full(len(truth), -np.inf)
        for c in candidates or []:
            score = float(c["score"])
            if len(truth):
                d = np.linalg.norm(centres - np.asarray(c["centre_mm"], dtype=float), axis=1)
                hit = d <= radii
            else:
                hit = np.zeros(0, dtype=bool)
            if np.any(hit & counted):
                sel = hit & counted
                best[sel] = np.maximum(best[sel], score)
            elif np.any(hit):
                continue  # hits only nodules below the size limit: neither TP nor FP
            else:
                fp_scores.append(score)
        nodule_scores.extend(best[counted].tolist())
    ns = np.asarray(nodule_scores, dtype=float)
    return ns, np.asarray(fp_scores, dtype=float), len(cases), len(ns), int(np.isfinite(ns).sum())


def _froc_curve(ns: np.ndarray, fps: np.ndarray, n_scans: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(thresholds, FP per scan, sensitivity), thresholds descending; the first point is +inf (nothing)."""
    scores = np.concatenate([ns[np.isfinite(ns)], fps])
    thr = np.concatenate([[np.inf], np.unique(scores)[::-1]])
    ns_sorted, fp_sorted = np.sort(ns[np.isfinite(ns)]), np.sort(fps)
    # counts of scores >= t, via sorted arrays
    tp = len(ns_sorted) - np.searchsorted(ns_sorted, thr, side="left")
    fp = len(fp_sorted) - np.searchsorted(fp_sorted, thr, side="left")
    sens = tp / len(ns) if len(ns) else np.full(len(thr), np.nan)
    return thr, fp / max(n_scans, 1), np.asarray(sens, dtype=float)


def _sens_at(fpr: np.ndarray, sens: np.ndarray, rates) -> list[float]:
    return [float(np.max(sens[fpr <= r])) for r in rates]  # the +inf point (0 FP) always qualifies


def froc(
    cases,
    min_diameter_mm: float = 0.0,
    fp_rates: tuple[float, ...] = FROC_FP_RATES,
    rounds: int = 0,
    seed: int = 0,
) -> dict:
    """FROC analysis of a nodule detector, after the LUNA16 challenge (Setio et al., MedIA 2017).

    ``cases``: one ``(truth, candidates)`` pair per scan (scans without
    nodules count too: their candidates are all false positives).
    ``truth`` is a list of ``{"centre_mm": [x, y, z], "diameter_mm": d}``
    (e.g. a ``nodule`` Example's ``label["nodules"]``); ``candidates`` a list
    of ``{"centre_mm": [x, y, z], "score": s}`` (e.g. `predict`'s
    ``["nodules"]``). Both in the same frame (LPS mm).

    Rules (as LUNA16): a candidate hits a nodule when its centre lies within
    the nodule's radius (``diameter_mm / 2``, inclusive) of the nodule's centre.
    A nodule is detected at threshold t when any candidate hitting it scores
    >= t, and counts once however many candidates hit it. A candidate that
    hits no nodule is a false positive. Nodules smaller than
    ``min_diameter_mm`` are left out of the sensitivity, and candidates that
    hit only such nodules are neither true nor false positives.

    The sensitivity at each rate r of ``fp_rates`` (false positives per
    scan; default 1/8, 1/4, 1/2, 1, 2, 4, 8) is the highest sensitivity of
    any threshold whose FP/scan is <= r (a step function; LUNA16's script
    interpolates linearly between operating points, which can give slightly
    higher values). CPM (competition performance metric) is their mean.

    Returns ``{"cpm", "sensitivity": {str(rate): value}, "fp_rates",
    "n_scans", "n_nodules", "n_nodules_hit" (by any candidate, whatever its
    score: the candidate-generation ceiling), "n_false_positives" (all
    scores), "curve": {"thresholds", "fp_per_scan", "sensitivity"}}``, and,
    with ``rounds > 0``, ``"cpm_ci95"``: a percentile bootstrap over scans.
    CPM and sensitivities are NaN when no nodule counts.
    """
    cases = list(cases)
    ns, fps, n_scans, n_nod, n_hit = _froc_points(cases, min_diameter_mm)
    thr, fpr, sens = _froc_curve(ns, fps, n_scans)
    if n_nod:
        values = _sens_at(fpr, sens, fp_rates)
    else:
        values = [float("nan")] * len(fp_rates)
    out: dict = {
        "cpm": float(np.mean(values)),
        "sensitivity": {f"{r:g}": v for r, v in zip(fp_rates, values)},
        "fp_rates": list(fp_rates),
        "n_scans": n_scans,
        "n_nodules": n_nod,
        "n_nodules_hit": n_hit,
        "n_false_positives": int(len(fps)),
        "min_diameter_mm": min_diameter_mm,
        "curve": {"thresholds": [float(t) for t in thr], "fp_per_scan": [float(f) for f in fpr],
                  "sensitivity": [float(s) for s in sens]},
    }
    if rounds > 0:
        out["cpm_ci95"] = list(bootstrap_ci(
            lambda idx: cpm([cases[i] for i in idx], min_diameter_mm, fp_rates), n_scans, rounds, seed))
    return out


def cpm(cases, min_diameter_mm: float = 0.0, fp_rates: tuple[float, ...] = FROC_FP_RATES) -> float:
    """LUNA16's competition performance metric: mean FROC sensitivity at ``fp_rates`` (see `froc`)."""
    cases = list(cases)
    ns, fps, n_scans, n_nod, _ = _froc_points(cases, min_diameter_mm)
    if not n_nod:
        return float("nan")
    _, fpr, sens = _froc_curve(ns, fps, n_scans)
    return float(np.mean(_sens_at(fpr, sens, fp_rates)))
