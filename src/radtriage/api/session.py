"""Logging in and out of the page, the caller's identity, and user administration (admins)."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import urlsplit

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from radtriage.api.auth import SESSION_COOKIE, User, client_of, current_user
from radtriage.api.problems import ProblemError
from radtriage.api.schemas import Me, UserIn, UserOut
from radtriage.api.deps import Admin, services_of
from radtriage.db import accounts, audit
from radtriage.security import verify_password

router = APIRouter(tags=["session"])


def _same_origin(request: Request) -> bool:
    """A login form post must come from this site's own page (no cross-site login)."""
    source = request.headers.get("origin") or request.headers.get("referer")
    if not source:
        return True  # non-browser clients send neither; browsers always send Origin on a POST
    return urlsplit(source).netloc == request.headers.get("host", "")


@router.post("/login", include_in_schema=False)
def login(request: Request, username: Annotated[str, Form(max_length=64)],
          password: Annotated[str, Form(max_length=256)]) -> Response:
    services = services_of(request)
    settings, limiter, client = services.settings, request.app.state.login_limiter, client_of(request)
    if not _same_origin(request):
        raise ProblemError(403, "Forbidden", "cross-site login refused")
    wait, held = limiter.retry_after(username, client)
    if wait > 0:
        audit.log(services.db, "login_refused", actor=username[:64], client=client,
                  detail={"why": "rate limit", "held": held})
        return RedirectResponse(f"/login?error=wait&s={int(wait) + 1}", status_code=303)
    account = accounts.get_user(services.db, username=username)
    # One password hash whoever asks (unknown, disabled, token-only or real): the answer's time says nothing.
    matches = verify_password(account.password_hash if account else None, password)
    if account is None or account.disabled or not matches:
        limiter.failed(username, client)
        audit.log(services.db, "login_failed", actor=username[:64], client=client)
        return RedirectResponse("/login?error=bad", status_code=303)
    limiter.succeeded(username, client)
    cookie, _csrf = accounts.open_session(services.db, account.id, settings.auth.session_hours)
    accounts.touch_login(services.db, account.id)
    audit.log(services.db, "login", actor=account.username, role=account.role, client=client)
    home = "/stroke" if account.role == "stroke" else "/"
    response = RedirectResponse(home, status_code=303)
    response.set_cookie(SESSION_COOKIE, cookie, max_age=int(settings.auth.session_hours * 3600), httponly=True,
                        secure=settings.cookie_secure, samesite="strict", path="/")
    return response


def _close_session(request: Request, user: User) -> None:
    services = services_of(request)
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie:
        accounts.close_session(services.db, cookie)
    audit.log(services.db, "logout", actor=user.username, role=user.role, client=client_of(request))


@router.post("/logout", include_in_schema=False)
async def logout(request: Request, user: Annotated[User, Depends(current_user)]) -> Response:
    await run_in_threadpool(_close_session, request, user)
    await request.app.state.live.session_ended()  # its open event streams end now
    response = Response(status_code=204)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


@router.get("/api/v1/me", response_model=Me, tags=["session"])
def me(request: Request, user: Annotated[User, Depends(current_user)]) -> Me:
    """Who is calling (and, for the page, the CSRF token its writes must carry)."""
    return Me(username=user.username, role=user.role, display_name=user.display_name,
              csrf_token=getattr(request.state, "csrf", None))


@router.get("/api/v1/users", response_model=list[UserOut], tags=["users"])
def list_users(request: Request, user: Admin) -> list[UserOut]:
    return [UserOut(**u) for u in accounts.list_users(services_of(request).db)]


@router.post("/api/v1/users", response_model=UserOut, status_code=201, tags=["users"])
def add_user(request: Request, body: UserIn, user: Admin) -> UserOut:
    db = services_of(request).db
    try:
        accounts.add_user(db, body.username, body.role, body.password, body.display_name)
    except accounts.AccountError as exc:
        raise ProblemError(409 if "exists" in str(exc) else 422, "User not added", str(exc)) from exc
    audit.log(db, "user_added", actor=user.username, role=user.role, client=client_of(request),
              detail={"username": body.username, "role": body.role})
    return next(UserOut(**u) for u in accounts.list_users(db) if u["username"] == body.username)


def _disable(request: Request, username: str, user: User) -> None:
    db = services_of(request).db
    try:
        accounts.set_disabled(db, username)
    except accounts.AccountError as exc:
        raise ProblemError(404, "Not Found", str(exc)) from exc
    audit.log(db, "user_disabled", actor=user.username, role=user.role, client=client_of(request),
              detail={"username": username})


@router.post("/api/v1/users/{username}/disable", status_code=204, tags=["users"])
async def disable_user(request: Request, username: str, user: Admin) -> Response:
    await run_in_threadpool(_disable, request, username, user)
    await request.app.state.live.session_ended()  # the user's open event streams end now
    return Response(status_code=204)
