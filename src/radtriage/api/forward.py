"""`/api/v1/forward`: a hub's side of edge gateways (`radtriage.forward`).

``POST /api/v1/forward/check``: an edge, after a series closed there, names the series' SOP Instance UIDs;
the hub answers which of them its index holds and which it lacks (the edge sends those again), and records
the study's site of origin the first time it is told (a study keeps the site it came from). Only a
``service`` account's token (or an admin) may call it; every call is audited with the site and the counts.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from radtriage.api.auth import client_of, require_roles
from radtriage.api.deps import Db
from radtriage.api.schemas import UidPattern
from radtriage.config.forward import SITE_PATTERN
from radtriage.db import audit
from radtriage.db import forward as rows

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
