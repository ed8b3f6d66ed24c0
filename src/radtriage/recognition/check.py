"""Checking a study's series against the recognition list."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from radtriage.recognition.listing import Criterion, Item, RecognitionList
from radtriage.rules import Select, select_failures, slices

Series = tuple[str, Mapping[str, Any], int]
"""A series as the index keeps it: (Series Instance UID, routing header, instances)."""


@dataclass(frozen=True)
class Verdict:
    """One item's verdict on a study: recognised on a series, or the criteria its best series misses."""

    item: str
    title: str
    recognised: bool
    series_uid: str
    met: list[str] = field(default_factory=list)
    missed: list[dict[str, str]] = field(default_factory=list)  # {criterion, reason}

    @property
    def words(self) -> str:
        if self.recognised:
            return f"recognised: meets {self.title} ({', '.join(self.met)})"
        return f"not recognised as {self.title}: " + "; ".join(f"{m['criterion']}: {m['reason']}" for m in self.missed)


def _misses(c: Criterion, header: Mapping[str, Any], n: int, dose: Callable[[], str | None]) -> str | None:
    """Why the series misses criterion ``c``; None when it meets it."""
    reasons = select_failures(Select(rules=c.rules), header, n) if c.rules else []
    if c.min_slices is not None and slices(header, n) < c.min_slices:
        reasons.append(f"{slices(header, n)} slices, fewer than {c.min_slices}")
    if c.dose_within_drl:
        said = dose()
        if said:
            reasons.append(said)
    return "; ".join(reasons) or None


def _verdict(item: Item, uid: str, header: Mapping[str, Any], n: int, dose: Callable[[], str | None]) -> Verdict:
    met, missed = [], []
    for c in item.criteria:
        why = _misses(c, header, n, dose)
        if why is None:
            met.append(c.name)
        else:
            missed.append({"criterion": c.name, "reason": why})
    return Verdict(item.id, item.title, not missed, uid, met, missed)


def check_study(listing: RecognitionList, series: Iterable[Series],
                dose: Callable[[], str | None] = lambda: "dose not known") -> list[Verdict]:
    """For each item that applies to a series of the study: the verdict of its best series (recognised if any
    series meets every criterion, else the one missing fewest). ``dose()`` says why the study's dose is not
    within its reference level, or None when it is (asked only for criteria that need it)."""
    out = []
    series = list(series)
    for item in listing.items:
        applies = [(uid, h, n) for uid, h, n in series if not select_failures(Select(rules=item.applies), h, n)]
        if applies:
            verdicts = [_verdict(item, uid, h, n, dose) for uid, h, n in applies]
            out.append(min(verdicts, key=lambda v: (not v.recognised, len(v.missed))))
    return out
