"""Who is asking: bearer tokens for machine clients, a session cookie for the page; roles per route.

``require_roles("radiologist", "admin")`` is the dependency a route declares;
it answers 401 (problem detail) without credentials and 403 for another role.
A request authenticated by the session cookie that changes something (POST,
PUT, PATCH, DELETE) must carry the session's CSRF token in ``X-CSRF-Token``;
bearer-token requests need none (browsers never send them on their own).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

from fastapi import Request
from pydantic import BaseModel

from radtriage.api.problems import ProblemError
from radtriage.config.settings import AuthSettings
from radtriage.db import Database, accounts
from radtriage.security import same

Role = Literal["radiologist", "stroke", "admin", "service", "commissioning", "physicist", "clinician"]
SESSION_COOKIE = "radtriage_session"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class User(BaseModel):
    """The authenticated caller, as routes see it."""

    id: int
    username: str
    role: Role
    display_name: str | None = None
    via: Literal["token", "session"] = "token"


def _user(account: accounts.Account, via: Literal["token", "session"]) -> User:
    return User(id=account.id, username=account.username, role=account.role,  # type: ignore[arg-type]
                display_name=account.display_name, via=via)


def _credential(request: Request) -> tuple[User | None, str | None]:
    """Look up the bearer token or session cookie of ``request`` now: (the user, the session's CSRF token)."""
    db = request.app.state.services.db  # auth runs before any dependency
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        account = accounts.user_for_token(db, token.strip())
        return (_user(account, "token") if account else None), None
    if cookie := request.cookies.get(SESSION_COOKIE):
        found = accounts.session_user(db, cookie)
        if found is not None:
            return _user(found[0], "session"), found[1]
    return None, None


def authenticate(request: Request) -> User | None:
    """The caller of ``request`` or None; raises 403 for a cookie write without its CSRF token."""
    if hasattr(request.state, "user"):
        return request.state.user
    user, csrf = _credential(request)
    if csrf is not None:
        request.state.csrf = csrf
        if request.method not in SAFE_METHODS and not same(request.headers.get(CSRF_HEADER, ""), csrf):
            raise ProblemError(403, "Forbidden", "missing or wrong CSRF token")
    request.state.user = user
    return user


def still_authenticated(request: Request) -> bool:
    """Whether the credential ``request`` came with is still valid (not logged out, revoked, expired or
    disabled): long-lived responses such as event streams ask again while they run."""
    return _credential(request)[0] is not None


def current_user(request: Request) -> User:
    user = authenticate(request)
    if user is None:
        raise ProblemError(401, "Unauthorized", "log in, or send a valid bearer token")
    return user


def require_roles(*roles: Role) -> Callable[[Request], User]:
    """A dependency that lets in only ``roles`` (admins are not let in implicitly)."""
    allowed = frozenset(roles)

    def dependency(request: Request) -> User:
        user = current_user(request)
        if user.role not in allowed:
            raise ProblemError(403, "Forbidden", f"the {user.role} role may not do this")
        return user

    dependency.__name__ = f"require_{'_or_'.join(roles)}"
    return dependency


def client_of(request: Request) -> str | None:
    return request.client.host if request.client else None


class LoginLimiter:
    """Failed logins, counted in the database so that every API worker sees them: a user name is held
    after ``per_user`` failures from any address, a client address after ``per_address`` over all names,
    each within ``window_s`` seconds."""

    def __init__(self, db: Database, per_user: int, per_address: int, window_s: float) -> None:
        self.db, self.per_user, self.per_address, self.window_s = db, per_user, per_address, window_s

    @classmethod
    def from_settings(cls, db: Database, auth: AuthSettings) -> "LoginLimiter":
        return cls(db, auth.login_attempts, auth.login_attempts_per_address, auth.login_window_s)

    def retry_after(self, username: str, client: str | None) -> tuple[float, str | None]:
        """(seconds until another attempt is allowed, "user" or "address": the limit that holds it); (0, None): now."""
        return accounts.login_wait(self.db, username, client, self.per_user, self.per_address, self.window_s)

    def failed(self, username: str, client: str | None) -> None:
        accounts.failed_login(self.db, username, client, self.window_s)

    def succeeded(self, username: str, client: str | None) -> None:
        accounts.forget_failed_logins(self.db, username, client)
