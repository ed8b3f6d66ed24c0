"""`/api/v1/studies/{uid}/report`: a study's report drafted from its live AI results, edited, signed, amended.

Everyone who reads studies reads the report; only radiologists save, remove AI findings, sign, add
addenda or send a draft (`radtriage.reports.signing` holds the rules, `db.reports` the rows). Every read
and every action is audited. The templates are checked when the app is built (`install`): a template that
names an unknown field stops start-up with the file and the field.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import BaseModel, Field

from radtriage.api import audit as audit_api
from radtriage.api.auth import client_of
from radtriage.api.deps import People, Radiologist, StudyUid
from radtriage.api.studies import _withdraw_if_wrong
from radtriage.reports import SECTIONS
from radtriage.reports.signing import MAX_TEXT, Reports
from radtriage.reports.templating import Templates

router = APIRouter(tags=["reports"])
Language = Field(min_length=2, max_length=16, pattern=r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})*$")


class SectionsIn(BaseModel):
    language: str = Language
    sections: dict[Literal["examination", "technique", "findings", "impression", "ai_statement"],
                   str] = Field(max_length=len(SECTIONS))
    revision: int = Field(ge=0)


class RemoveIn(BaseModel):
    result_id: int
    index: int = Field(ge=0)
    comment: str | None = Field(default=None, max_length=500)


class SignIn(BaseModel):
    languages: list[str] = Field(min_length=1, max_length=4)
    revision: int = Field(ge=0)


class AddendumIn(BaseModel):
    language: str = Language
    text: str = Field(min_length=1, max_length=MAX_TEXT)


class DeliveryOut(BaseModel):
    destination: str
    channel: str
    status: str
    revision: int
    state: str  # queued | sent | retrying | refused | cancelled
    error: str | None = None
    delivered_at: datetime | None = None


class ReportOut(BaseModel):
    id: int | None
    study_uid: str
    state: str  # new (not stored yet) | draft | signed
    body: dict[str, Any]  # per language: sections, headings, name, review
    removed: list[str]
    languages: list[str]  # signed in
    revision: int
    stale: bool = False
    signed_by: str | None = None
    signed_at: datetime | None = None
    addenda: list[dict[str, Any]] = []
    findings: list[dict[str, Any]] = []  # the live AI findings: result_id, index, code, text, removed
    deliveries: list[DeliveryOut] = []
    send_drafts: bool = False


def install(app: FastAPI) -> None:
    """Load the report templates (the site's over the shipped ones) and render each against sample data:
    a template error raises `TemplateProblem` (file and field), and the app is not built."""
    services = app.state.services
    templates = Templates(services.settings.reports.templates_dir)
    templates.check()
    app.state.reports = Reports(services.db, services.settings, templates, _titles(services.settings))


def _titles(settings: Any) -> dict[str, dict[str, Any]]:
    try:
        from radtriage.pipelines import load_pipelines

        return {s.id: {"title": s.title or s.id} for s in load_pipelines(settings.inference.pipelines_dir)}
    except Exception:  # noqa: BLE001 - titles are a nicety: the pipeline id stands in
        return {}


def _reports(request: Request) -> Reports:
    return request.app.state.reports


STATES = {"pending": "queued", "sending": "queued", "delivered": "sent", "failed": "refused", "cancelled": "cancelled"}


def _out(request: Request, report: dict[str, Any]) -> ReportOut:
    deliveries = [DeliveryOut(destination=x["target"], channel=x["channel"], status=x["payload"]["status"],
                              revision=int(x["payload"].get("revision", 0)),
                              state="retrying" if x["state"] == "pending" and x["last_error"] else STATES.get(x["state"], x["state"]),
                              error=x["last_error"], delivered_at=x["delivered_at"]) for x in report.get("exports", [])]
    return ReportOut(**{k: report.get(k) for k in ("id", "study_uid", "state", "body", "removed", "languages",
                                                   "revision", "stale", "signed_by", "signed_at", "findings")},
                     addenda=[{k: a[k] for k in ("id", "language", "text", "signed_by", "signed_at")}
                              for a in report.get("addenda", [])],
                     deliveries=deliveries, send_drafts=_reports(request).settings.reports.send_drafts)


@router.get("/api/v1/studies/{study_uid}/report", response_model=ReportOut)
def get_report(request: Request, study_uid: StudyUid, user: People) -> ReportOut:
    """The report: the stored draft or signed report, else a draft made now from the live AI results."""
    report = _reports(request).current(study_uid)
    audit_api.read(request, "report_viewed", study_uid, report=report["id"])
    return _out(request, report)


@router.put("/api/v1/studies/{study_uid}/report/draft", response_model=ReportOut)
def save_draft(request: Request, study_uid: StudyUid, body: SectionsIn, user: Radiologist) -> ReportOut:
    """Autosave one language's sections; 409 with the current ``revision`` when it changed meanwhile."""
    return _out(request, _reports(request).save(study_uid, user, body.language, body.sections, body.revision,
                                                client_of(request)))


@router.post("/api/v1/studies/{study_uid}/report/redraft", response_model=ReportOut)
def redraft(request: Request, study_uid: StudyUid, user: Radiologist) -> ReportOut:
    """Draft again from the live AI results now (the draft's edits are replaced)."""
    return _out(request, _reports(request).redraft(study_uid, user, client_of(request)))


@router.post("/api/v1/studies/{study_uid}/report/remove-finding", response_model=ReportOut)
def remove_finding(request: Request, study_uid: StudyUid, body: RemoveIn, user: Radiologist) -> ReportOut:
    """Take an AI finding out of the draft: the reader disagrees with it (feedback; its exports withdrawn)."""
    return _out(request, _reports(request).remove_finding(study_uid, user, body.result_id, body.index, body.comment,
                                                          client_of(request), then=_withdraw_if_wrong))


@router.post("/api/v1/studies/{study_uid}/report/sign", response_model=ReportOut)
def sign(request: Request, study_uid: StudyUid, body: SignIn, user: Radiologist) -> ReportOut:
    """Sign the draft in the languages given: final, and sent to every destination."""
    return _out(request, _reports(request).sign(study_uid, user, body.languages, body.revision, client_of(request)))


@router.post("/api/v1/studies/{study_uid}/report/addenda", response_model=ReportOut, status_code=201)
def add_addendum(request: Request, study_uid: StudyUid, body: AddendumIn, user: Radiologist) -> ReportOut:
    """A signed addendum to the signed report, sent as an amendment."""
    return _out(request, _reports(request).addendum(study_uid, user, body.language, body.text, client_of(request)))


@router.post("/api/v1/studies/{study_uid}/report/send-preliminary", response_model=ReportOut)
def send_preliminary(request: Request, study_uid: StudyUid, user: Radiologist) -> ReportOut:
    """Send the draft as preliminary (409 unless the site sends drafts)."""
    return _out(request, _reports(request).send_preliminary(study_uid, user, client_of(request)))


@router.get("/studies/{study_uid}/report/print", response_class=HTMLResponse, include_in_schema=False)
def print_view(request: Request, study_uid: StudyUid, user: People, lang: str | None = None) -> Response:
    """The report as a printable page (its print stylesheet leaves only the report on paper)."""
    from radtriage.api.pages import _page
    from radtriage.reports.sections import exported_sections

    report = _reports(request).current(study_uid)
    audit_api.read(request, "report_printed", study_uid, report=report["id"])
    status = "final" if report["state"] == "signed" else "preliminary"
    sections = [s for s in exported_sections(report, status) if lang is None or s[0] == lang]
    return _page(request, "report_print.html", user=user, report=report, sections=sections, study_uid=study_uid)
