"""`/api/v1/models`: each pipeline's state at this site, and an admin's decisions on it.

``GET /api/v1/models`` lists the pipelines (state, why, what runs, floors, decisions);
``POST /api/v1/models/{pipeline}/promote`` (body: the reason and the metrics.json of ``radtriage
validate``), ``.../demote`` and ``.../suspend`` (body: the reason) take a decision signed by the
calling admin; the promotion's evidence may be ``"shadow"``: the silent trial's reads so far. A refused
decision answers 422 with each problem (e.g. each shortfall of the evidence) in ``problems``. Decisions and
refusals are in the audit trail (`radtriage.governance.decide`).

Each decision is signed with the site key and kept with its commissioning report:
``GET .../decisions/{id}/report`` (the printable HTML page) and ``.../signature`` (whether it still
verifies). ``GET /api/v1/models/{pipeline}/evidence/shadow`` is the silent trial's metrics.json so far.
``GET /api/v1/models/{pipeline}/monitor`` is what the model monitor sees of the pipeline now (positive rate
by window with its expected range and hard limit, scores against the baseline, input mix, agreement,
failure and "AI not applicable" rates: `radtriage.api.model_monitor`), ``.../monitor/{chart}.svg`` its charts.
Admins and commissioning readers may read these; each reading is audited.
"""

from __future__ import annotations

from datetime import datetime
from functools import partial
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from radtriage.api import model_monitor
from radtriage.api.auth import client_of
from radtriage.alerts.withdraw import withdraw_pipeline
from radtriage.api.deps import Admin, AppSettings, Db, ShadowReaders, services_of
from radtriage.api.problems import ProblemError
from radtriage.db import audit
from radtriage.db import governance as rows
from radtriage.governance import report
from radtriage.governance.decide import DecisionRefused, decide, overview, pipelines
from radtriage.governance.reads import shadow_evidence
from radtriage.validation.run import ValidationError

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
    # the metrics.json of `radtriage validate`, or the silent trial; none: refused, naming what is needed
    evidence: dict[str, Any] | Literal["shadow"] | None = None
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
                   carry_over=getattr(body, "carry_over", False), withdraw=_withdrawer(request, db),
                   key=services_of(request).secret_key)
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


class SignatureOut(BaseModel):
    decision_id: int
    valid: bool
    problems: list[str]
    signature: str | None
    signed: str | None


def _kept_decision(db: Db, pipeline: str, decision_id: int) -> tuple[dict[str, Any], dict[str, Any] | None]:
    found = [d for d in rows.decisions(db, pipeline) if d["id"] == decision_id]
    if not found:
        raise ProblemError(404, "No such decision", f"no decision {decision_id} on pipeline {pipeline}")
    return found[0], rows.decision_report(db, decision_id)


@router.get("/models/{pipeline}/decisions/{decision_id}/report", response_class=HTMLResponse)
def decision_report(request: Request, pipeline: PipelineId, decision_id: int, db: Db,
                    user: ShadowReaders) -> HTMLResponse:
    """The decision's commissioning report as kept when it was taken (printable HTML, no external assets)."""
    decision, kept = _kept_decision(db, pipeline, decision_id)
    if kept is None:
        raise ProblemError(404, "No report", f"decision {decision_id} was taken before reports were kept")
    problems = report.verify(services_of(request).secret_key, decision, kept)
    audit.log(db, "commissioning_report_viewed", actor=user.username, role=user.role, client=client_of(request),
              detail={"pipeline": pipeline, "decision": decision_id, "verifies": not problems})
    return HTMLResponse(kept["report"], headers={"X-Radtriage-Signature": "valid" if not problems else "invalid",
                                                  "Content-Security-Policy": "default-src 'none'; img-src data:; "
                                                  "style-src 'unsafe-inline'"})


@router.get("/models/{pipeline}/decisions/{decision_id}/signature", response_model=SignatureOut)
def decision_signature(request: Request, pipeline: PipelineId, decision_id: int, db: Db,
                       user: ShadowReaders) -> SignatureOut:
    """Whether the decision and its evidence are still what its admin signed."""
    decision, kept = _kept_decision(db, pipeline, decision_id)
    problems = report.verify(services_of(request).secret_key, decision, kept)
    audit.log(db, "decision_verified", actor=user.username, role=user.role, client=client_of(request),
              detail={"pipeline": pipeline, "decision": decision_id, "verifies": not problems})
    return SignatureOut(decision_id=decision_id, valid=not problems, problems=problems,
                        signature=kept and kept["signature"], signed=kept and kept["signed"])


@router.get("/models/{pipeline}/evidence/shadow")
def silent_trial_evidence(request: Request, pipeline: PipelineId, db: Db, settings: AppSettings,
                          user: ShadowReaders,
                          rounds: Annotated[int, Query(ge=0, le=5000)] = 1000) -> dict[str, Any]:
    """The silent trial's evidence so far: the metrics.json of `radtriage validate` from the reads of the
    pipeline's shadow results (per-case rows included)."""
    try:
        doc = shadow_evidence(db, settings, pipeline, rounds)
    except ValidationError as exc:
        raise ProblemError(404, "No silent-trial evidence", str(exc)) from None
    audit.log(db, "shadow_evidence_viewed", actor=user.username, role=user.role, client=client_of(request),
              detail={"pipeline": pipeline, "cases": doc["n"]})
    return doc


def _spec(settings: AppSettings, pipeline: str) -> Any:
    spec = pipelines(settings).get(pipeline)
    if spec is None:
        raise ProblemError(404, "No such pipeline", f"no pipeline {pipeline!r}")
    return spec


Block = Annotated[int | None, Query(ge=5, le=500, description="live results per history window")]


@router.get("/models/{pipeline}/monitor", response_model=model_monitor.MonitorOut)
def monitor(pipeline: PipelineId, db: Db, settings: AppSettings, user: ShadowReaders,
            block: Block = None) -> model_monitor.MonitorOut:
    """What the model monitor sees of the pipeline now (its own window, baseline and rule; nothing acted on)."""
    return model_monitor.monitor_out(db, settings, _spec(settings, pipeline), block)


@router.get("/models/{pipeline}/monitor/{chart}.svg", response_class=Response)
def monitor_chart(pipeline: PipelineId, chart: Annotated[str, Path(pattern="^(positive-rate|scores|rates)$")],
                  db: Db, settings: AppSettings, user: ShadowReaders, block: Block = None) -> Response:
    """One chart of the monitor's view as SVG (positive-rate, scores, rates)."""
    svg = model_monitor.chart(db, settings, _spec(settings, pipeline), chart, block)
    return Response(svg, media_type="image/svg+xml", headers={"Content-Security-Policy": "default-src 'none'",
                                                               "Cache-Control": "no-store"})
