"""`GET /api/v1/shadow`: the results of pipelines in shadow (a silent trial), for admins and commissioning readers.

A shadow result changes no priority and pages nobody; this is the only place it is shown. Each listing is
audited (it names the studies it showed), as the worklist's is.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel

from radtriage.api.auth import client_of
from radtriage.api.deps import Db, ShadowReaders
from radtriage.db import audit
from radtriage.db import governance as rows

router = APIRouter(prefix="/api/v1", tags=["governance"])


class ShadowResult(BaseModel):
    id: int
    pipeline_id: str
    pipeline_version: str
    study_uid: str
    series_uid: str
    task: str
    model_id: str
    model_version: str
    positive: bool
    priority: str  # what it would have been, had the pipeline been live
    findings: list[dict[str, Any]]
    scores: dict[str, Any]
    created_at: datetime


class ShadowList(BaseModel):
    items: list[ShadowResult]
    note: str = "Shadow results: not shown to readers, not counted for priority, nobody paged."


@router.get("/shadow", response_model=ShadowList)
def shadow_results(request: Request, db: Db, user: ShadowReaders,
                   pipeline: Annotated[str | None, Query(pattern=r"^[a-z][a-z0-9_]*$", max_length=64)] = None,
                   limit: Annotated[int, Query(ge=1, le=1000)] = 200) -> ShadowList:
    found = rows.shadow_results(db, pipeline, limit)
    items = [ShadowResult(**{k: r[k] for k in ShadowResult.model_fields if k in r},
                          findings=r["result"].get("findings", []), scores=r["result"].get("scores", {}))
             for r in found]
    audit.log(db, "shadow_listed", actor=user.username, role=user.role, client=client_of(request),
              detail={"studies": sorted({i.study_uid for i in items}), "pipeline": pipeline})
    return ShadowList(items=items)
