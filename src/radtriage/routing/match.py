"""Which pipelines apply to an assembled series, and which series of a study a pipeline should read.

The rules are `radtriage.rules`; a pipeline's are its ``select`` (does it
apply?) and ``prefer`` (which series is best?). No match is "no AI
applicable", not an error.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from radtriage.pipelines import PipelineSpec
from radtriage.rules import NONE_OF, rank_key, select_failures

Candidate = tuple[str, Mapping[str, Any], int]
"""(series UID, header, number of instances) of one series of a study."""


def why_not(spec: PipelineSpec, header: Mapping[str, Any], n_instances: int) -> list[str]:
    """Every reason ``spec`` does not apply to the series; [] when it does."""
    return ([] if spec.enabled else ["pipeline disabled"]) + select_failures(spec.select, header, n_instances)


def near_misses(specs: Iterable[PipelineSpec], header: Mapping[str, Any], n_instances: int) -> list[str]:
    """For a series no pipeline applies to: each enabled pipeline it misses by one reason only, with that reason
    (e.g. ``stroke_ich: LossyImageCompressionRatio '338.7' is not <= 10``), so a site can see why."""
    out = []
    for spec in specs:
        reasons = why_not(spec, header, n_instances)
        # a miss on an ``any`` group (what the series shows: head, chest...) is another kind of study, not a near miss
        if spec.enabled and len(reasons) == 1 and not reasons[0].startswith(NONE_OF):
            out.append(f"{spec.id}: {reasons[0]}")
    return out


def matches(spec: PipelineSpec, header: Mapping[str, Any], n_instances: int) -> bool:
    """Whether ``spec`` applies to the series (`why_not` says why not)."""
    return not why_not(spec, header, n_instances)


def route(specs: Iterable[PipelineSpec], header: Mapping[str, Any], n_instances: int) -> list[str]:
    """The ids of the pipelines that apply to the series, in the order of ``specs``; [] is "no AI applicable"."""
    return [s.id for s in specs if matches(s, header, n_instances)]


def rank_series(spec: PipelineSpec, candidates: Iterable[Candidate]) -> list[str]:
    """The series UIDs ``spec`` applies to, best first (``prefer`` in order; ties keep the given order)."""
    ok = [(uid, header, n) for uid, header, n in candidates if matches(spec, header, n)]
    ranked = sorted(range(len(ok)), key=lambda i: (rank_key(spec.prefer, ok[i][1], ok[i][2]), i))
    return [ok[i][0] for i in ranked]


def best_series(spec: PipelineSpec, candidates: Iterable[Candidate]) -> str | None:
    """The UID of the series of a study that ``spec`` should read, or None when none applies."""
    ranked = rank_series(spec, candidates)
    return ranked[0] if ranked else None
