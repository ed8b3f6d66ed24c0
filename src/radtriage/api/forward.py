"""`/api/v1/forward`: a hub's side of edge gateways (`radtriage.forward`).

``POST /api/v1/forward/check``: an edge, after a series closed there, names the series' SOP Instance UIDs;
the hub answers which of them its index holds and which it lacks (the edge sends those again), and records
the study's site of origin the first time it is told (a study keeps the site it came from).

``POST /api/v1/forward/results``: an edge running AI (``forward.ai: edge``) delivers each result it recorded
(`radtriage.forward.payload.EdgeResult`, validated strictly); the hub keeps it once per site and edge result
id, and shows it with its origin beside its own results (never counted for its own priority).

Only a ``service`` account's token (or an admin) may call them; every call is audited with the site.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from radtriage.api.auth import client_of, require_roles
from radtriage.api.bodies import json_body
from radtriage.api.deps import Db
from radtriage.api.problems import ProblemError
from radtriage.api.schemas import UidPattern
from radtriage.config.forward import SITE_PATTERN
from radtriage.db import audit, edge_results
from radtriage.db import forward as rows
from radtriage.db.clock import utcnow
from radtriage.forward.payload import EdgeResult

router = APIRouter(prefix="/api/v1/forward", tags=["forward"])
Edge = Annotated[object, Depends(require_roles("service", "admin"))]
Uid = Annotated[str, Field(pattern=UidPattern, max_length=64)]


class SeriesCheck(BaseModel):
    site: str = Field(pattern=SITE_PATTERN)
    study_uid: Uid
    series_uid: Uid
    sop_instance_uids: list[Uid] = Field(max_length=100_000)


class SeriesHeld(BaseModel):
    held: int
    missing: list[str]
    site_recorded: bool


@router.post("/check", response_model=SeriesHeld)
async def check(body: SeriesCheck, request: Request, user: Edge, db: Db) -> SeriesHeld:
    """Which of the series' instances this hub holds; records the study's site of origin where it has none."""

    def run() -> SeriesHeld:
        with db.write() as conn:
            held = rows.held(conn, body.study_uid, body.series_uid, body.sop_instance_uids)
            recorded = rows.mark_site(conn, body.study_uid, body.site)
            missing = [u for u in dict.fromkeys(body.sop_instance_uids) if u not in held]
            audit.record(conn, "series_completeness_checked", user.username, user.role, study_uid=body.study_uid,
                         client=client_of(request),
                         detail={"site": body.site, "series_uid": body.series_uid, "held": len(held),
                                 "missing": len(missing), **({"site_recorded": True} if recorded else {})})
        return SeriesHeld(held=len(held), missing=missing, site_recorded=recorded)

    return await run_in_threadpool(run)


class EdgeResultKept(BaseModel):
    id: int
    new: bool  # False: this result was delivered before and is kept once


MAX_RESULT_BYTES = 256 * 1024  # a result with 64 findings at their longest is well under this


async def _edge_result(request: Request) -> EdgeResult:
    """The body, read up to `MAX_RESULT_BYTES` (413 beyond, before it is parsed), as an `EdgeResult` (422)."""
    return await json_body(request, EdgeResult, MAX_RESULT_BYTES, "an edge result")


@router.post("/results", response_model=EdgeResultKept,
             openapi_extra={"requestBody": {"required": True, "content": {"application/json": {}}}})
async def receive_result(request: Request, user: Edge, db: Db) -> EdgeResultKept:
    """Keep one AI result an edge recorded (`radtriage.forward.payload.EdgeResult`; once per site and edge result
    id), audited with its origin."""
    body = await _edge_result(request)

    def run() -> EdgeResultKept | None:
        values = edge_results.received_values({**body.model_dump(mode="json"), "recorded_at": body.recorded_at},
                                               user.username, utcnow())
        detail = {"site": body.site, "edge_result_id": body.result_id, "series_uid": body.series_uid,
                  "pipeline": body.pipeline_id, "version": body.pipeline_version, "state": body.state}
        with db.write() as conn:
            came_from = rows.site_of(conn, body.study_uid)
            if came_from not in (None, body.site):  # a study keeps the site it came from: refused, audited
                audit.record(conn, "edge_result_refused", user.username, user.role, study_uid=body.study_uid,
                             client=client_of(request), detail={**detail, "study_site": came_from})
                return None
            rid, new = edge_results.keep(conn, values)
            audit.record(conn, "edge_result_received", user.username, user.role, study_uid=body.study_uid,
                         client=client_of(request), detail={**detail, "new": new})
        return EdgeResultKept(id=rid, new=new)

    kept = await run_in_threadpool(run)
    if kept is None:
        raise ProblemError(409, "Conflict", f"this study came to this hub from another site than {body.site}")
    return kept
