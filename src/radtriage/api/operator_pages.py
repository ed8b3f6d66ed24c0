"""The operator endpoints (/metrics, /docs, /redoc, /openapi.json) need a login once others can reach them.

On loopback alone (the default) they stay open to this machine, as a newcomer
expects. When the API listens on another address, or a reverse proxy is
configured in front of it, the API description needs any logged-in user and
the metrics a service token (a Prometheus scraper) or an admin: they name the
peers, counters and routes an attacker would map first.
"""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from radtriage.api.auth import authenticate
from radtriage.api.problems import ProblemError, problem

METRICS_ROLES = frozenset({"service", "admin"})
DOC_PATHS = ("/docs", "/redoc", "/openapi.json")


def _guarded(path: str) -> bool:
    return path == "/metrics" or any(path == p or path.startswith(p + "/") for p in DOC_PATHS)


class OperatorPagesGuard:
    """ASGI middleware: 401 without credentials, 403 for a role that may not read the metrics."""

    def __init__(self, app: ASGIApp, enabled: bool) -> None:
        self.app, self.enabled = app, enabled

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not self.enabled or scope["type"] != "http" or not _guarded(scope["path"]):
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        try:
            user = await run_in_threadpool(authenticate, request)
        except ProblemError as exc:
            await problem(exc.status, exc.title, exc.detail)(scope, receive, send)
            return
        if user is None:
            response = problem(401, "Unauthorized", "log in, or send a valid bearer token")
            response.headers["WWW-Authenticate"] = "Bearer"
        elif scope["path"] == "/metrics" and user.role not in METRICS_ROLES:
            response = problem(403, "Forbidden", "the metrics are for a service token or an admin")
        else:
            await self.app(scope, receive, send)
            return
        await response(scope, receive, send)
