"""`/api/v1/models`: each pipeline's state at this site, and an admin's decisions on it.

``GET /api/v1/models`` lists the pipelines (state, why, what runs, floors, decisions);
``POST /api/v1/models/{pipeline}/promote`` (body: the reason and the metrics.json of ``radtriage
validate``), ``.../demote`` and ``.../suspend`` (body: the reason) take a decision signed by the
calling admin. A refused decision answers 422 with each problem (e.g. each shortfall of the evidence)
in ``problems``. Decisions and refusals are in the audit trail (`radtriage.governance.decide`).
"""

from __future__ import annotations

from datetime import datetime
from functools import partial
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Request
from pydantic import BaseModel, ConfigDict, Field

from radtriage.api.auth import client_of
from radtriage.alerts.withdraw import withdraw_pipeline
from radtriage.api.deps import Admin, AppSettings, Db, ShadowReaders, services_of
from radtriage.api.problems import ProblemError
from radtriage.governance.decide import DecisionRefused, decide, overview

router = APIRouter(prefix="/api/v1", tags=["governance"])
PipelineId = Annotated[str, Path(pattern=r"^[a-z][a-z0-9_]*$", max_length=64)]


class Decision(BaseModel):
    id: int
    pipeline_id: str
    action: str
    state: str
    reason: str
    model_id: str
    model_version: str
    thresholds: dict[str, float]
    decided_by: str
    decided_at: datetime
    evidence: dict[str, Any] | None = None


class PipelineOut(BaseModel):
    pipeline_id: str
    task: str
    model_id: str
    model_version: str
    thresholds: dict[str, float]
    state: Literal["shadow", "live", "suspended"]
    reason: str
    source: str
    floors: dict[str, Any]
    decisions: list[Decision]


class DecisionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: Annotated[str, Field(min_length=1, max_length=2000)]


class PromotionIn(DecisionIn):
    evidence: dict[str, Any]  # the metrics.json that `radtriage validate` wrote
    carry_over: bool = False  # accept evidence of another model version or threshold, explicitly


def _decision(d: dict[str, Any]) -> Decision:
    return Decision(**{k: d[k] for k in Decision.model_fields if k in d})


@router.get("/models", response_model=list[PipelineOut])
def list_models(db: Db, settings: AppSettings, user: ShadowReaders) -> list[PipelineOut]:
    return [PipelineOut(**{**p, "decisions": [_decision(d) for d in p["decisions"]]}) for p in overview(db, settings)]


def _withdrawer(request: Request, db: Db) -> Any:
    """What withdraws a demoted pipeline's alerts: the alert service (it counts and wakes its worker), or
    the database alone when alerting is off here."""
    alerts = getattr(services_of(request), "alerts", None)
    return alerts.withdraw_pipeline if alerts is not None else partial(withdraw_pipeline, db)


def _take(request: Request, db: Db, settings: AppSettings, user: Any, pipeline: str, action: str,
          body: DecisionIn) -> Decision:
    try:
        d = decide(db, settings, pipeline, action, body.reason, user.username, role=user.role,
                   client=client_of(request), evidence=getattr(body, "evidence", None),
                   carry_over=getattr(body, "carry_over", False), withdraw=_withdrawer(request, db))
    except DecisionRefused as exc:
        raise ProblemError(422, "Decision refused", str(exc), problems=exc.problems) from None
    return _decision(d)


@router.post("/models/{pipeline}/promote", response_model=Decision)
def promote(request: Request, pipeline: PipelineId, body: PromotionIn, db: Db, settings: AppSettings,
            user: Admin) -> Decision:
    return _take(request, db, settings, user, pipeline, "promote", body)


@router.post("/models/{pipeline}/demote", response_model=Decision)
def demote(request: Request, pipeline: PipelineId, body: DecisionIn, db: Db, settings: AppSettings,
           user: Admin) -> Decision:
    return _take(request, db, settings, user, pipeline, "demote", body)


@router.post("/models/{pipeline}/suspend", response_model=Decision)
def suspend(request: Request, pipeline: PipelineId, body: DecisionIn, db: Db, settings: AppSettings,
            user: Admin) -> Decision:
    return _take(request, db, settings, user, pipeline, "suspend", body)
