"""The statistics the monitor judges with: PSI and KS against a baseline histogram, categorical drift,
and a Wilson interval for rates. Plain functions of numbers (numpy only), so they are easy to test on
known distributions and cheap to run after every result.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

EPS = 1e-4  # a proportion of 0 counts as this much, so that PSI stays finite
Z95 = 1.959963984540054


def histogram(values: Sequence[float], edges: Sequence[float]) -> np.ndarray:
    """Counts of ``values`` in the bins between ``edges``; values outside go to the first or last bin."""
    e = np.asarray(edges, dtype=float)
    v = np.clip(np.asarray(values, dtype=float), e[0], e[-1])
    return np.histogram(v, bins=e)[0].astype(float)


def proportions(counts: Sequence[float]) -> np.ndarray:
    c = np.asarray(counts, dtype=float)
    total = c.sum()
    return c / total if total > 0 else np.full(len(c), 1.0 / max(len(c), 1))


def psi(actual: Sequence[float], expected: Sequence[float]) -> float:
    """Population stability index of ``actual`` against ``expected`` (counts or proportions per bin):
    sum of (a - e) * ln(a / e). Below 0.1 stable, 0.1-0.25 a moderate shift, above 0.25 a large one."""
    a = np.maximum(proportions(actual), EPS)
    e = np.maximum(proportions(expected), EPS)
    return float(np.sum((a - e) * np.log(a / e)))


def ks(actual: Sequence[float], expected: Sequence[float]) -> float:
    """Kolmogorov-Smirnov distance between two binned distributions: the largest difference of their
    cumulative shares at the bin edges (the exact statistic of the unbinned samples is at least this)."""
    return float(np.max(np.abs(np.cumsum(proportions(actual)) - np.cumsum(proportions(expected)))))


def ks_critical(n: int, m: float | None = None, alpha: float = 0.01) -> float:
    """The two-sample KS distance beyond which the samples differ at ``alpha`` (m None: a known distribution)."""
    c = math.sqrt(-0.5 * math.log(alpha / 2))
    return c * math.sqrt(1 / n + (1 / m if m else 0.0))


def mixture(negative: Sequence[float], positive: Sequence[float], prevalence: float) -> np.ndarray:
    """The score distribution of a population with ``prevalence`` positives, from the two classes' histograms."""
    return (1 - prevalence) * proportions(negative) + prevalence * proportions(positive)


def categorical_psi(actual: Mapping[str, float], expected: Mapping[str, float]) -> float:
    """PSI between two counts by value (a scanner model, a kernel); a value only one side has counts fully."""
    keys = sorted(set(actual) | set(expected))
    return psi([actual.get(k, 0) for k in keys], [expected.get(k, 0) for k in keys])


def unseen_share(actual: Mapping[str, float], expected: Mapping[str, float]) -> float:
    """The share of ``actual`` with a value ``expected`` never had (a new scanner, a new kernel)."""
    total = sum(actual.values())
    return sum(n for k, n in actual.items() if k not in expected) / total if total else 0.0


def wilson(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of a rate of ``k`` in ``n`` (0, 1 when n is 0)."""
    if n <= 0:
        return 0.0, 1.0
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def beyond(k: int, n: int, low: float | None, high: float | None) -> str | None:
    """Whether the rate of ``k`` in ``n`` is out of [low, high] beyond chance: "above" when even the lower
    bound of its 95% interval is above ``high``, "below" when even the upper bound is below ``low``."""
    lo, hi = wilson(k, n)
    if high is not None and lo > high:
        return "above"
    if low is not None and hi < low:
        return "below"
    return None
