"""Rows the model monitor reads (`radtriage.monitor`): a pipeline's recorded results with their score and
input header, its refusals and failures since a time, readers' verdicts on its results, and the monitor's
own audit entries (what it last said about each pipeline). The monitor keeps no table of its own: its
warnings are audit entries (``monitor_warning``, ``monitor_cleared``), its demotions model decisions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from datetime import datetime
from typing import Any

from sqlalchemy import Select, and_, bindparam, case, func, select

from radtriage.db.clock import aware
from radtriage.db.engine import Database
from radtriage.db.tables import audit_log, feedback, jobs, results

INPUTS = ("Manufacturer", "ManufacturerModelName", "ConvolutionKernel", "SliceThickness", "KVP", "PixelSpacing")
"""The header keywords of a series whose mix the monitor follows (values as the routing header keeps them)."""
WARNING, CLEARED = "monitor_warning", "monitor_cleared"  # the monitor's audit actions
REFUSED = "AI not applicable"  # how the dispatcher's note names a pipeline's input-guard refusal


@dataclass(frozen=True)
class Seen:
    """One recorded result as the monitor reads it."""

    id: int
    state: str  # the pipeline's state when it was recorded: live | shadow
    positive: bool
    score: float | None
    study_uid: str
    created_at: datetime
    inputs: tuple[Any, ...]  # the values of `INPUTS`, as the routing header keeps them


@lru_cache(maxsize=32)
def _results_query(score_key: str | None) -> Select:
    """The query of `results_after`, built once per score key (it runs after every recorded result)."""
    score = results.c.result[("scores", score_key)] if score_key else None
    return (select(results.c.id, results.c.state, results.c.positive, results.c.study_uid, results.c.created_at,
                   *([score.label("score")] if score is not None else []),
                   *(jobs.c.case[("header", k)].label(k) for k in INPUTS))
            .join(jobs, jobs.c.id == results.c.job_id)
            .where(results.c.pipeline_id == bindparam("pipeline_id"), results.c.id > bindparam("after_id"))
            .order_by(results.c.id.desc()).limit(bindparam("limit")))


def results_after(db: Database, pipeline_id: str, score_key: str | None, after_id: int, limit: int) -> list[Seen]:
    """The newest ``limit`` results of the pipeline with an id above ``after_id``, oldest first."""
    with db.read() as conn:
        rows = conn.execute(_results_query(score_key),
                            {"pipeline_id": pipeline_id, "after_id": after_id, "limit": limit}).mappings().all()
    return [Seen(r["id"], r["state"], bool(r["positive"]), _number(r.get("score")), r["study_uid"],
                 aware(r["created_at"]), tuple(r[k] for k in INPUTS)) for r in reversed(rows)]


def _number(value: Any) -> float | None:
    try:
        return float(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def refused_and_failed(db: Database, pipeline_id: str, since: datetime) -> tuple[int, int]:
    """Jobs since ``since`` whose series the pipeline's input guard refused, and those that failed for good
    with an error of the pipeline (the dispatcher's notes name it: "<pipeline>: ...")."""
    refused = and_(jobs.c.state.in_(("no_ai", "done")),
                   jobs.c.last_error.contains(f"{pipeline_id}: {REFUSED}", autoescape=True))
    q = (select(func.coalesce(func.sum(case((refused, 1), else_=0)), 0),
                func.coalesce(func.sum(case((jobs.c.state == "failed", 1), else_=0)), 0))
         .where(jobs.c.updated_at >= since,  # the only indexed test: the planner scans this time range
                jobs.c.last_error.contains(f"{pipeline_id}: ", autoescape=True)))
    with db.read() as conn:
        refused_n, failed_n = conn.execute(q).one()
    return int(refused_n), int(failed_n)


def verdicts(db: Database, seen: Sequence[Seen]) -> dict[str, int]:
    """Readers' feedback on these results: count by verdict (agree | disagree | unsure)."""
    if not seen:
        return {}
    with db.read() as conn:
        return dict(conn.execute(_VERDICTS, {"uids": sorted({s.study_uid for s in seen}),
                                             "ids": [s.id for s in seen]}).all())


_VERDICTS = (select(feedback.c.verdict, func.count())  # by study (indexed), then result; compiled once
             .where(feedback.c.study_uid.in_(bindparam("uids", expanding=True)),
                    feedback.c.result_id.in_(bindparam("ids", expanding=True)))
             .group_by(feedback.c.verdict))


def last_said(db: Database, limit: int = 500) -> dict[str, dict[str, Any]]:
    """The monitor's newest warning or clearing entry per pipeline (``detail["pipeline"]``)."""
    q = (select(audit_log.c.id, audit_log.c.action, audit_log.c.at, audit_log.c.detail)
         .where(audit_log.c.action.in_((WARNING, CLEARED))).order_by(audit_log.c.id.desc()).limit(limit))
    out: dict[str, dict[str, Any]] = {}
    with db.read() as conn:
        for r in conn.execute(q).mappings():
            out.setdefault(str((r["detail"] or {}).get("pipeline")), {**dict(r), "at": aware(r["at"])})
    return out
