"""Rows of a hub's edge results (`radtriage.forward.payload`): the AI results its edge gateways recorded.

Each is kept once per ``(site, edge_result_id)``: a delivery repeated (a lost answer, a lease that ran out at
the edge) finds it kept and changes nothing. They are shown with their origin and never feed the hub's
triage (docs/forwarding.md); a shadow result of the edge is for the eyes of those who read shadow results.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any

from sqlalchemy import Connection, select
from sqlalchemy.dialects import postgresql, sqlite

from radtriage.db.clock import aware
from radtriage.db.engine import Database
from radtriage.db.tables import edge_results


def keep(conn: Connection, values: dict[str, Any]) -> tuple[int, bool]:
    """Keep one edge result unless its ``(site, edge_result_id)`` is kept already: (its id, whether it is new)."""
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    q = (dialect.insert(edge_results).values(**values)
         .on_conflict_do_nothing(index_elements=["site", "edge_result_id"]).returning(edge_results.c.id))
    added = conn.execute(q).scalar()  # None: it was kept before (a concurrent delivery waits for the first)
    if added is not None:
        return added, True
    found = conn.execute(select(edge_results.c.id).where(edge_results.c.site == values["site"],
                                                         edge_results.c.edge_result_id == values["edge_result_id"]))
    return found.scalar_one(), False


_RECORDED = (edge_results.c.recorded_at, edge_results.c.site, edge_results.c.edge_result_id)


def _row(r: Any) -> dict[str, Any]:
    return {**dict(r), "recorded_at": aware(r["recorded_at"]), "received_at": aware(r["received_at"])}


def of_study(db: Database, study_uid: str, shadow: bool) -> list[dict[str, Any]]:
    """A study's edge results in the order the edges recorded them; ``shadow``: the edge's shadow results too."""
    q = select(edge_results).where(edge_results.c.study_uid == study_uid)
    if not shadow:
        q = q.where(edge_results.c.state == "live")
    with db.read() as conn:
        return [_row(r) for r in conn.execute(q.order_by(*_RECORDED)).mappings()]


def live_of_studies(db: Database, study_uids: Iterable[str]) -> dict[str, list[dict[str, Any]]]:
    """The live edge results of these studies (a worklist page's), by study, in the order they were recorded."""
    uids, out = list(dict.fromkeys(study_uids)), {}
    with db.read() as conn:
        for i in range(0, len(uids), 500):
            q = (select(edge_results).where(edge_results.c.study_uid.in_(uids[i:i + 500]),
                                            edge_results.c.state == "live").order_by(*_RECORDED))
            for r in conn.execute(q).mappings():
                out.setdefault(r["study_uid"], []).append(_row(r))
    return out


def received_values(body: dict[str, Any], by: str, now: dt.datetime) -> dict[str, Any]:
    """The row of a validated body (`EdgeResult.model_dump(mode="json")` with ``recorded_at`` a datetime)."""
    res = body["result"]
    return {"site": body["site"], "edge_result_id": body["result_id"], "study_uid": body["study_uid"],
            "series_uid": body["series_uid"], "pipeline_id": body["pipeline_id"],
            "pipeline_version": body["pipeline_version"], "task": res["task"], "model_id": res["model_id"],
            "model_version": res["model_version"], "state": body["state"], "positive": res["positive"],
            "priority": body["priority"], "result": res, "recorded_at": body["recorded_at"], "received_at": now,
            "received_by": by}
