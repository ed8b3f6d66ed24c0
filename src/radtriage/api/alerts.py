"""Stroke alerts over HTTP: the active list, "I'm taking it", resolving, the signed link and the phone page.

Uses ``app.state.alerts`` (an `AlertService`). The one-click link from a
message opens a confirmation page; only its POST acknowledges, because mail
systems fetch links with GET to scan them. The link's signature is its
authority (no login on a phone in the corridor).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from pydantic import BaseModel, Field

from radtriage.alerts.config import read_fallback_contact
from radtriage.alerts.service import AlertService
from radtriage.alerts.signing import LinkError
from radtriage.alerts.views import AlertView
from radtriage.api import audit as audit_api
from radtriage.api.auth import authenticate, client_of
from radtriage.api.problems import ProblemError
from radtriage.api.deps import AlertReaders, Staff

ALERTS_DIR = Path(__file__).resolve().parents[1] / "alerts"
templates = Jinja2Templates(directory=ALERTS_DIR / "templates")
ASSETS = {"stroke.js": "text/javascript", "stroke.css": "text/css"}
CSP = ("default-src 'self'; img-src 'self'; style-src 'self'; script-src 'self'; connect-src 'self'; "
       "frame-ancestors 'none'; form-action 'self'; base-uri 'none'")
PAGE_ROLES = ("stroke", "admin")
POLL_S = 3  # how often the stroke page asks for the active alerts

router = APIRouter(tags=["alerts"])


def maybe_alerts(request: Request) -> AlertService | None:
    return getattr(request.app.state, "alerts", None)


def alert_service(request: Request) -> AlertService:
    svc = maybe_alerts(request)
    if svc is None:
        raise ProblemError(503, "Alerting off", "alerting is not configured on this server")
    return svc


Alerts = Annotated[AlertService, Depends(alert_service)]
MaybeAlerts = Annotated[AlertService | None, Depends(maybe_alerts)]


class AckIn(BaseModel):
    via: Literal["api", "page"] = "api"


class AckOut(BaseModel):
    taken_now: bool  # False: someone had already taken it (``alert.taken_by`` says who)
    alert: AlertView


class ResolveIn(BaseModel):
    reason: str = Field(min_length=1, max_length=128)


def _found(view: AlertView | None, alert_id: int) -> AlertView:
    if view is None:
        raise ProblemError(404, "Not found", f"no alert {alert_id}")
    return view


@router.get("/api/v1/alerts", response_model=list[AlertView])
def list_alerts(request: Request, alerts: Alerts, _user: AlertReaders,
                study_uid: Annotated[str | None, Query(max_length=64, pattern=r"^[0-9.]+$")] = None
                ) -> list[AlertView]:
    """Active alerts (open or taken, recent), newest first; with ``study_uid``, every alert of that study."""
    views = alerts.for_study(study_uid) if study_uid else alerts.active()
    audit_api.listed(request, "alerts_listed", [v.study_uid for v in views], alerts=[v.id for v in views])
    return views


@router.get("/api/v1/alerts/{alert_id}", response_model=AlertView)
def get_alert(request: Request, alert_id: int, alerts: Alerts, _user: AlertReaders) -> AlertView:
    view = _found(alerts.get(alert_id), alert_id)
    audit_api.read(request, "alert_viewed", view.study_uid, alert_id=alert_id)
    return view


@router.post("/api/v1/alerts/{alert_id}/ack", response_model=AckOut)
def acknowledge(alert_id: int, alerts: Alerts, user: Staff, body: AckIn | None = None) -> AckOut:
    """The caller is taking it: escalation stops, the others are told."""
    try:
        out = alerts.acknowledge(alert_id, actor=user.username, display_name=user.display_name or user.username,
                                 via=(body or AckIn()).via, role=user.role)
    except LookupError:
        raise ProblemError(404, "Not found", f"no alert {alert_id}") from None
    return AckOut(taken_now=out.event is not None, alert=_found(alerts.get(alert_id), alert_id))


@router.post("/api/v1/alerts/{alert_id}/resolve", response_model=AlertView)
def resolve(alert_id: int, body: ResolveIn, alerts: Alerts, user: Staff) -> AlertView:
    try:
        alerts.resolve(alert_id, actor=user.username, reason=body.reason, role=user.role)
    except LookupError:
        raise ProblemError(404, "Not found", f"no alert {alert_id}") from None
    return _found(alerts.get(alert_id), alert_id)


@router.get("/api/v1/alerts/{alert_id}/key-image")
def key_image(request: Request, alert_id: int, alerts: Alerts, _user: AlertReaders) -> Response:
    path = alerts.key_image(alert_id)  # only a PNG inside the results folder
    if path is None:
        raise ProblemError(404, "Not found", "this alert has no key image")
    audit_api.read(request, "alert_image_viewed", _found(alerts.get(alert_id), alert_id).study_uid, alert_id=alert_id)
    return FileResponse(path, media_type="image/png", headers={"Cache-Control": "private, max-age=3600"})


# --- pages ---------------------------------------------------------------------------------------


def _page(request: Request, name: str, status_code: int = 200, **context: object) -> Response:
    response = templates.TemplateResponse(request, name, context, status_code=status_code)
    response.headers.update({"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff",
                             "Referrer-Policy": "no-referrer", "Cache-Control": "no-store"})
    return response


LINK_PROBLEMS = {"invalid": "This link is not valid.", "expired": "This link has expired: use the stroke page."}


def _link_page(request: Request, alerts: AlertService, token: str, take: bool) -> Response:
    """The link's confirmation page (GET) or its acknowledgement (POST), which records the client address
    and user agent; a link sent at a level the alert has since left is refused (409)."""
    try:
        grant = alerts.link_grant(token)
        outcome = (alerts.acknowledge_link(token, client=client_of(request),
                                           user_agent=request.headers.get("user-agent")) if take else None)
    except LinkError as exc:
        return _page(request, "ack.html", 403, problem=LINK_PROBLEMS[exc.reason], alert=None)
    except LookupError:
        return _page(request, "ack.html", 404, problem="This alert no longer exists.", alert=None)
    view = alerts.get(grant.alert_id)
    if view is None:
        return _page(request, "ack.html", 404, problem="This alert no longer exists.", alert=None)
    member = alerts.config.member(grant.member)
    audit_api.link_view(request, member.username if member and member.username else f"member:{grant.member}",
                        view.study_uid, grant.alert_id)
    if (outcome is not None and outcome.refused) or (view.state == "open" and view.level != grant.level + 1):
        return _page(request, "ack.html", 409, alert=None, problem=(
            f"This link was sent at level {grant.level + 1}; the alert has since been escalated to level "
            f"{view.level} and paged to others, so this link no longer takes it. Use the stroke page or the "
            "newest message."))
    return _page(request, "ack.html", alert=view, token=token, member=member.name if member else grant.member,
                 taken_now=bool(outcome and outcome.event), problem=None, done=take)


def _alerting_off(request: Request) -> Response:
    """What a person on a phone sees instead of the stroke page when this server sends no alerts."""
    services = getattr(request.app.state, "services", None)
    contact = read_fallback_contact(services.settings.alerting_file if services is not None else None)
    return _page(request, "off.html", 503, contact=contact)


@router.get("/alerts/ack/{token}", response_class=HTMLResponse, include_in_schema=False)
def ack_link_page(request: Request, token: str, alerts: MaybeAlerts) -> Response:
    """Confirm before acknowledging: a GET changes nothing."""
    if alerts is None:
        return _alerting_off(request)
    return _link_page(request, alerts, token, take=False)


@router.post("/alerts/ack/{token}", response_class=HTMLResponse, include_in_schema=False)
def ack_link(request: Request, token: str, alerts: MaybeAlerts) -> Response:
    if alerts is None:
        return _alerting_off(request)
    return _link_page(request, alerts, token, take=True)


@router.get("/stroke", response_class=HTMLResponse, include_in_schema=False)
def stroke_page(request: Request, alerts: MaybeAlerts) -> Response:
    """The stroke team's phone page; with alerting off, a page saying so and whom to call (no login
    needed: it shows no patient data, and the person may have no account)."""
    if alerts is None:
        return _alerting_off(request)
    user = authenticate(request)
    if user is None:
        return RedirectResponse("/login", status_code=303)
    if user.role not in PAGE_ROLES:
        return _page(request, "ack.html", 403, problem="The stroke page is for the stroke team.", alert=None)
    return _page(request, "stroke.html", user=user, csrf=getattr(request.state, "csrf", ""), poll_s=POLL_S)


@router.get("/alerts/assets/{name}", include_in_schema=False)
def asset(name: str) -> Response:
    if name not in ASSETS:
        raise ProblemError(404, "Not found", "no such file")
    return FileResponse(ALERTS_DIR / "static" / name, media_type=ASSETS[name],
                        headers={"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"})
