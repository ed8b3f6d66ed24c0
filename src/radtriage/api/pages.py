"""The server-rendered pages: log in, the worklist, a study, the models. Data comes from `/api/v1` by a little JavaScript."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from radtriage.api.auth import User, authenticate
from radtriage.api.problems import ProblemError
from radtriage.api.schemas import UidPattern
from radtriage.governance.state import DEMONSTRATION

HERE = Path(__file__).parent
templates = Jinja2Templates(directory=HERE / "templates")
STATIC_DIR = HERE / "static"

router = APIRouter(include_in_schema=False)

LOGIN_ERRORS = {"bad": "Wrong user name or password.", "wait": "Too many attempts: wait a few minutes."}
CSP = ("default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
       "connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'")


def _page(request: Request, name: str, **context: object) -> Response:
    response = templates.TemplateResponse(request, name, context)
    response.headers["Content-Security-Policy"] = CSP
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "same-origin"
    response.headers["Cache-Control"] = "no-store"
    return response


def demonstration(request: Request) -> str | None:
    """The notice that AI results come from demonstration models not commissioned here, or None: asked of the
    running pipelines' states where this process runs them, else from the environment (development)."""
    states = getattr(getattr(request.app.state, "runtime", None), "states", None)
    if states is not None:
        return DEMONSTRATION if states.demonstration() else None
    return DEMONSTRATION if request.app.state.services.settings.environment == "development" else None


@router.get("/login", response_class=HTMLResponse)
def login_page(request: Request, error: Annotated[str | None, Query(max_length=8)] = None) -> Response:
    return _page(request, "login.html", error=LOGIN_ERRORS.get(error or ""))


@router.get("/", response_class=HTMLResponse)
def worklist_page(request: Request) -> Response:
    user = authenticate(request)
    if user is None:
        return RedirectResponse("/login", status_code=303)
    return _page(request, "worklist.html", user=user, csrf=getattr(request.state, "csrf", ""),
                 demonstration=demonstration(request))


@router.get("/studies/{study_uid}", response_class=HTMLResponse)
def study_page(request: Request, study_uid: str) -> Response:
    user = authenticate(request)
    if user is None:
        return RedirectResponse("/login", status_code=303)
    if not re.fullmatch(UidPattern, study_uid) or len(study_uid) > 64:
        return _page(request, "study.html", user=user, csrf="", study_uid="", error="not a study UID")
    return _page(request, "study.html", user=user, csrf=getattr(request.state, "csrf", ""), study_uid=study_uid,
                 error=None, demonstration=demonstration(request))


def page_user(request: Request, roles: tuple[str, ...]) -> User | Response:
    """The user of a page for these roles only: the way to the login page for no session, 403 for another role."""
    user = authenticate(request)
    if user is None:
        return RedirectResponse("/login", status_code=303)
    if user.role not in roles:
        raise ProblemError(403, "Forbidden", f"the {user.role} role may not do this")
    return user


def user_page(request: Request, name: str, user: User, **context: object) -> Response:
    """A page rendered for ``user`` (already allowed: `page_user`)."""
    return _page(request, name, user=user, csrf=getattr(request.state, "csrf", ""), **context)


def role_page(request: Request, name: str, roles: tuple[str, ...], **context: object) -> Response:
    """A page for these roles only: the login page for no session, 403 for another role."""
    user = page_user(request, roles)
    return user if isinstance(user, Response) else user_page(request, name, user, **context)


@router.get("/admin/models", response_class=HTMLResponse)
def models_page(request: Request) -> Response:
    """Each pipeline's state, evidence, monitor charts and decisions; admins also decide here."""
    return role_page(request, "models.html", ("admin", "commissioning"), demonstration=demonstration(request))
