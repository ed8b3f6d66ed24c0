"""Who is asking: bearer tokens for machine clients, a session cookie for the page; roles per route.

``require_roles("radiologist", "admin")`` is the dependency a route declares;
it answers 401 (problem detail) without credentials and 403 for another role.
A request authenticated by the session cookie that changes something (POST,
PUT, PATCH, DELETE) must carry the session's CSRF token in ``X-CSRF-Token``;
bearer-token requests need none (browsers never send them on their own).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Literal

from fastapi import Request
from pydantic import BaseModel

from radtriage.api.problems import ProblemError
from radtriage.db import accounts
from radtriage.security import same

Role = Literal["radiologist", "stroke", "admin", "service"]
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


def authenticate(request: Request) -> User | None:
    """The caller of ``request`` or None; raises 403 for a cookie write without its CSRF token."""
    if hasattr(request.state, "user"):
        return request.state.user
    db = request.app.state.services.db
    user: User | None = None
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        account = accounts.user_for_token(db, token.strip())
        user = _user(account, "token") if account else None
    elif cookie := request.cookies.get(SESSION_COOKIE):
        found = accounts.session_user(db, cookie)
        if found is not None:
            user = _user(found[0], "session")
            request.state.csrf = found[1]
            if request.method not in SAFE_METHODS and not same(request.headers.get(CSRF_HEADER, ""), found[1]):
                raise ProblemError(403, "Forbidden", "missing or wrong CSRF token")
    request.state.user = user
    return user


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
    """At most ``attempts`` failed logins per (username, client) within ``window_s`` seconds."""

    def __init__(self, attempts: int, window_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.attempts, self.window_s, self.clock = attempts, window_s, clock
        self._failures: dict[tuple[str, str], deque[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, key: tuple[str, str]) -> deque[float]:
        now = self.clock()
        q = self._failures.setdefault(key, deque())
        while q and q[0] <= now - self.window_s:
            q.popleft()
        return q

    def retry_after(self, username: str, client: str | None) -> float:
        """Seconds until another attempt is allowed; 0 when it is allowed now."""
        with self._lock:
            q = self._recent((username.lower(), client or "-"))
            return 0.0 if len(q) < self.attempts else max(0.0, q[0] + self.window_s - self.clock())

    def failed(self, username: str, client: str | None) -> None:
        with self._lock:
            self._recent((username.lower(), client or "-")).append(self.clock())

    def succeeded(self, username: str, client: str | None) -> None:
        with self._lock:
            self._failures.pop((username.lower(), client or "-"), None)
