"""Priority, from one task result to a study: the one home of the rule.

Pure: no I/O. A task result's priority comes from its pipeline's ``priority``
rules (`result_priority`, applied when the result is recorded). A study's
priority (`triage_study`) from the state of its jobs and the results of its
pipelines, by these rules in order:

1. The most urgent priority among the latest result of each pipeline (the
   per-pipeline priority comes from the mapping in ``pipelines/*.yaml``,
   applied by the dispatcher) when it is ``STAT`` or ``URGENT``: a critical
   finding shows at once, even while other pipelines of the study still run.
2. Otherwise ``PENDING_AI`` while any job of the study is waiting or running.
3. Otherwise the most urgent result (``ROUTINE``), or ``ROUTINE`` with the
   reason "no AI applicable" / "AI failed: ..." / "AI off" / "AI suspended: ..." / "AI in silent trial".

Only live results count (`radtriage.governance`): a result recorded while its pipeline was in shadow
never does, and on a study not yet read, neither does a result of a pipeline since demoted or
suspended (``withdrawn``): its flag goes, and the study says "AI under review".
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from radtriage.domain import Priority, TaskResult
from radtriage.pipelines import PipelineSpec
from radtriage.rules import failure

RANK: dict[str, int] = {Priority.STAT.value: 0, Priority.URGENT.value: 1,
                        Priority.PENDING_AI.value: 2, Priority.ROUTINE.value: 3}
"""Sort order of the worklist: most urgent first (within a priority, oldest first)."""

WAITING = frozenset({"ready", "running"})


def result_priority(spec: PipelineSpec, result: TaskResult | Mapping[str, Any]) -> tuple[Priority, str | None]:
    """The worklist priority of one task result by the pipeline's ``priority`` rules, and the reason.

    ``result`` is a `TaskResult` (its `TaskResult.fields`) or the fields themselves (dotted
    fields reach into nested mappings). The first rule all of whose tests hold wins; else the
    default, with no reason.
    """
    if isinstance(result, TaskResult):
        result = result.fields()
    for rule in spec.priority.rules:
        if all(failure(t, result, t.field) is None for t in rule.when):
            return rule.priority, rule.reason
    return spec.priority.default, None


@dataclass(frozen=True)
class StudyTriage:
    priority: str
    reason: str | None
    ai_state: str  # pending | done | none | failed | off
    flags: list[dict[str, Any]] = field(default_factory=list)
    tasks: tuple[str, ...] = ()

    @property
    def rank(self) -> int:
        return RANK[self.priority]


UNDER_REVIEW = "AI under review"
SILENT_TRIAL = "AI in silent trial"
SUSPENDED = "AI suspended:"


def counted(results: Iterable[Mapping[str, Any]], withdrawn: Mapping[str, str] | None = None,
            status: str = "unread") -> list[Mapping[str, Any]]:
    """The results that count: live ones (a row without a state is live), and on an unread study none of a
    ``withdrawn`` pipeline's (demoted or suspended since)."""
    out = [r for r in results if r.get("state", "live") == "live"]
    if withdrawn and status == "unread":
        out = [r for r in out if r["pipeline_id"] not in withdrawn]
    return out


def latest_per_pipeline(results: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The newest live result row (highest id) of each pipeline."""
    latest: dict[str, Mapping[str, Any]] = {}
    for r in counted(results):
        if r["pipeline_id"] not in latest or r["id"] > latest[r["pipeline_id"]]["id"]:
            latest[r["pipeline_id"]] = r
    return sorted(latest.values(), key=lambda r: (RANK.get(r["priority"], 9), r["pipeline_id"]))


def _flags(row: Mapping[str, Any]) -> list[dict[str, Any]]:
    found = [f for f in row["result"].get("findings", []) if not str(f.get("code", "")).startswith("series:")]
    return [{"task": row["task"], "pipeline": row["pipeline_id"], "result_id": row["id"], "code": f["code"],
             "text": f["text"], "probability": f.get("probability"), "positive": bool(row["positive"]),
             "priority": row["priority"]} for f in found]


def _quiet_reason(jobs: list[tuple[str, str | None]], results: list[Mapping[str, Any]],
                  withdrawn: Mapping[str, str] | None, status: str) -> str | None:
    """Why a study that ran AI shows no result: under review, suspended, or in a silent trial."""
    if withdrawn and status == "unread" and any(r["pipeline_id"] in withdrawn for r in counted(results)):
        return UNDER_REVIEW
    for _, note in jobs:
        at = (note or "").find(SUSPENDED)
        if at >= 0:
            return note[at:].split("; ")[0]
    if any(r.get("state") == "shadow" for r in results):
        return SILENT_TRIAL
    return None


def triage_study(job_states: Iterable[tuple[str, str | None]], results: Iterable[Mapping[str, Any]],
                 inference_enabled: bool = True, withdrawn: Mapping[str, str] | None = None,
                 status: str = "unread") -> StudyTriage:
    """The triage of one study from ``(state, last_error)`` of its jobs and its result rows.

    ``withdrawn``: pipelines demoted or suspended since (id -> reason), whose results no longer count on a
    study whose reading ``status`` is still unread."""
    jobs, results = list(job_states), list(results)
    latest = latest_per_pipeline(counted(results, withdrawn, status))
    quiet = _quiet_reason(jobs, results, withdrawn, status)
    flags = [f for r in latest for f in _flags(r)]
    tasks = tuple(sorted({r["task"] for r in latest}))
    waiting = inference_enabled and any(state in WAITING for state, _ in jobs)
    ai_state = ("pending" if waiting else "off" if not inference_enabled and not latest
                else "done" if latest else "failed" if any(s == "failed" for s, _ in jobs) else "none")

    def because(priority: str) -> str | None:
        words = [f["text"] for f in flags if f["priority"] == priority and f["positive"]]
        return "; ".join(words)[:256] or None

    if latest and RANK[latest[0]["priority"]] < RANK[Priority.PENDING_AI.value]:
        top = latest[0]["priority"]
        return StudyTriage(top, because(top), ai_state, flags, tasks)
    if waiting:
        return StudyTriage(Priority.PENDING_AI.value, "AI running", ai_state, flags, tasks)
    if latest:
        top = latest[0]["priority"]
        return StudyTriage(top, because(top) or (quiet if quiet == UNDER_REVIEW else None), ai_state, flags, tasks)
    if ai_state == "failed":
        error = next((e for s, e in jobs if s == "failed" and e), "unknown error")
        return StudyTriage(Priority.ROUTINE.value, f"AI failed: {error}"[:256], ai_state, flags, tasks)
    return StudyTriage(Priority.ROUTINE.value, "AI off" if ai_state == "off" else quiet or "no AI applicable",
                       ai_state, flags, tasks)
