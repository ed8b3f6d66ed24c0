"""`GET /api/v1/shadow`: the results of pipelines in shadow (a silent trial), for admins and commissioning readers.

A shadow result changes no priority and pages nobody; this is the only place it is shown. Each listing is
audited (it names the studies it showed), as the worklist's is.

``POST /api/v1/shadow/results/{id}/truth``: a commissioning reader (or an admin) records what the study
holds, in the task's own terms (`radtriage.validation.truth`: ICH or LVO present or absent with its
subtypes or side, each nodule confirmed, rejected or added with its size, bone age as read); the newest
read of each result makes the silent trial's evidence (`radtriage.governance.reads`). A body that does
not fit the task or the result answers with a problem detail; each read is audited.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from pydantic import BaseModel

from radtriage.api.auth import client_of
from radtriage.api.deps import Db, ShadowReaders
from radtriage.db import audit
from radtriage.db import governance as rows
from radtriage.db import reads
from radtriage.governance.reads import record_truth
from radtriage.validation.truth import Truth

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
    read: dict[str, Any] | None = None  # the newest truth a reader recorded for it


class ShadowList(BaseModel):
    items: list[ShadowResult]
    note: str = "Shadow results: not shown to readers, not counted for priority, nobody paged."


@router.get("/shadow", response_model=ShadowList)
def shadow_results(request: Request, db: Db, user: ShadowReaders,
                   pipeline: Annotated[str | None, Query(pattern=r"^[a-z][a-z0-9_]*$", max_length=64)] = None,
                   limit: Annotated[int, Query(ge=1, le=1000)] = 200) -> ShadowList:
    found = rows.shadow_results(db, pipeline, limit)
    read = reads.reads_of(db, [r["id"] for r in found])
    items = [ShadowResult(**{k: r[k] for k in ShadowResult.model_fields if k in r},
                          findings=r["result"].get("findings", []), scores=r["result"].get("scores", {}),
                          read=read.get(r["id"]))
             for r in found]
    audit.log(db, "shadow_listed", actor=user.username, role=user.role, client=client_of(request),
              detail={"studies": sorted({i.study_uid for i in items}), "pipeline": pipeline})
    return ShadowList(items=items)


class TruthOut(BaseModel):
    id: int
    result_id: int
    label: dict[str, Any]  # the truth as the metrics read it


@router.post("/shadow/results/{result_id}/truth", response_model=TruthOut, status_code=201)
def give_truth(request: Request, result_id: Annotated[int, Path(ge=1)], body: Truth, db: Db,
               user: ShadowReaders) -> TruthOut:
    """Record the truth for one shadow result (the silent trial); a later read of the same result replaces it
    in the evidence, both are kept."""
    return TruthOut(**record_truth(db, result_id, body, user.id, user.username, user.role, client_of(request)))
