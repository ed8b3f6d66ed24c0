"""The commissioning baseline a pipeline's score distribution is compared with.

The scores kept with the promoting evidence when the pipeline is live by a promotion whose evidence
kept them (`radtriage.governance.decide` keeps each case's score and truth); else the histogram in the
pipeline file's ``monitor.score.baseline`` (the reference model on its own validation data). A
two-class baseline (negatives and positives) is mixed at the site's expected ``prevalence``, since a
validation set is usually enriched with positives and the score distribution follows the mix.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from radtriage.monitor import stats
from radtriage.pipelines import MonitorSpec

PROBABILITY_EDGES = (0.0, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.8, 0.9, 0.95, 1.0)
DEFAULT_EDGES = {"ich": PROBABILITY_EDGES, "lvo": PROBABILITY_EDGES, "nodule": PROBABILITY_EDGES,
                 "bone_age": (-60.0, -24.0, -12.0, -6.0, 0.0, 6.0, 12.0, 24.0, 60.0)}  # difference_months


@dataclass(frozen=True)
class Reference:
    edges: tuple[float, ...]
    shares: np.ndarray  # the expected share of scores per bin
    source: str  # for people: "the promoting evidence (decision 7, 212 cases)"


def _two_class(edges: Sequence[float], negative: Sequence[float], positive: Sequence[float],
               prevalence: float | None) -> np.ndarray:
    neg, pos = np.asarray(negative, float), np.asarray(positive, float)
    if not pos.sum() or not neg.sum():
        return stats.proportions(neg + pos)
    mix = prevalence if prevalence is not None else pos.sum() / (pos.sum() + neg.sum())
    return stats.mixture(neg, pos, mix)


def from_evidence(spec: MonitorSpec, edges: Sequence[float], decision: Mapping[str, Any]) -> Reference | None:
    """The promoting evidence's kept scores (``evidence["scores"]``: ``score`` and, when known, ``positive``)."""
    kept = (decision.get("evidence") or {}).get("scores") or {}
    scores, truth = kept.get("score") or [], kept.get("positive")
    pairs = [(float(s), t) for s, t in zip(scores, truth or [None] * len(scores)) if s is not None]
    if not pairs:
        return None
    source = f"the promoting evidence (decision {decision['id']}, {len(pairs)} cases)"
    if truth is not None and all(t is not None for _, t in pairs):
        neg = stats.histogram([s for s, t in pairs if not t], edges)
        pos = stats.histogram([s for s, t in pairs if t], edges)
        return Reference(tuple(edges), _two_class(edges, neg, pos, spec.score and spec.score.prevalence), source)
    return Reference(tuple(edges), stats.proportions(stats.histogram([s for s, _ in pairs], edges)), source)


def reference(spec: MonitorSpec, task: str, decision: Mapping[str, Any] | None) -> Reference | None:
    """The baseline for ``spec``'s score: the promoting ``decision``'s evidence, else the file's histogram."""
    drift = spec.score
    if drift is None:
        return None
    edges = tuple(drift.baseline.edges) if drift.baseline else DEFAULT_EDGES.get(task, PROBABILITY_EDGES)
    if decision is not None and decision.get("action") == "promote":
        found = from_evidence(spec, edges, decision)
        if found is not None:
            return found
    b = drift.baseline
    if b is None:
        return None
    shares = stats.proportions(b.counts) if b.counts is not None else _two_class(
        b.edges, b.negative or [], b.positive or [], drift.prevalence)
    return Reference(edges, shares, b.source)


def kept_scores(task: str, doc: Mapping[str, Any]) -> dict[str, list[Any]] | None:
    """What a promotion keeps of its evidence's cases for the monitor (a metrics.json of `radtriage validate`):
    each case's score as results carry it, and whether the case is positive, or None without scores."""
    score, positive = [], []
    for case in doc.get("cases") or []:
        pred, label = case.get("prediction") or {}, case.get("label") or {}
        if task in ("ich", "lvo"):
            s, t = pred.get("score"), label.get("positive")
        elif task == "nodule":
            s = max((n.get("score") or 0.0 for n in pred.get("nodules") or []), default=0.0)
            t = bool(label.get("nodules")) if "nodules" in label else None
        else:  # bone age: the difference from the chronological age, in months
            age, months = label.get("chronological_age_months"), pred.get("bone_age_months")
            s, t = (months - age if months is not None and age is not None else None), None
        if s is not None:
            score.append(round(float(s), 4))
            positive.append(None if t is None else bool(t))
    if not score:
        return None
    return {"score": score, "positive": positive if all(t is not None for t in positive) else None}
