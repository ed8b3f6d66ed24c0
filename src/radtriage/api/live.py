"""Live updates for the pages: server-sent events when the worklist changes.

One task per process watches the worklist table (its newest change and row
count) and wakes every open event stream; the streams tell the page to fetch
the rows again. Watching the table rather than in-process calls means changes
made by other processes (a dispatcher elsewhere, another API worker) show too.
A stream ends when its session ends (logout, disable, expiry) or its token is
revoked: it checks every few seconds, and at once after a logout here.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from radtriage.api.auth import User, require_roles, still_authenticated

log = logging.getLogger(__name__)

KEEPALIVE_S = 15.0
AUTH_RECHECK_S = 2.0  # an open stream checks that its session or token is still valid this often


class LiveHub:
    def __init__(self, probe: Callable[[], Any], poll_s: float = 0.5, recheck_s: float = AUTH_RECHECK_S) -> None:
        self.probe, self.poll_s, self.recheck_s = probe, poll_s, recheck_s
        self.version = 0
        self.sessions_ended = 0
        self._state: Any = None
        self._changed: asyncio.Condition | None = None
        self._task: asyncio.Task | None = None

    async def start(self) -> None:
        self._changed = asyncio.Condition()
        self._state = await run_in_threadpool(self.probe)
        self._task = asyncio.create_task(self._watch(), name="live-hub")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self.poll_s)
            try:
                state = await run_in_threadpool(self.probe)
            except Exception:  # noqa: BLE001 - database briefly away: try again
                log.warning("live: could not read the worklist state")
                continue
            if state != self._state:
                self._state = state
                await self.notify()

    async def notify(self) -> None:
        """Wake every stream now (after a change made by this process)."""
        assert self._changed is not None
        async with self._changed:
            self.version += 1
            self._changed.notify_all()

    async def session_ended(self) -> None:
        """Wake every stream to check its credential now (after a logout or a disable in this process)."""
        if self._changed is None:
            return
        async with self._changed:
            self.sessions_ended += 1
            self._changed.notify_all()

    async def stream(self, request: Request, allowed: Callable[[], bool]) -> AsyncIterator[str]:
        """The events for one page; it ends once ``allowed()`` says the caller's session or token is no longer
        valid (checked every `recheck_s` and at once after a logout in this process)."""
        assert self._changed is not None
        seen, ended = self.version, self.sessions_ended
        yield "retry: 2000\n" + _event("hello", {"version": seen})
        loop = asyncio.get_running_loop()
        quiet_since = loop.time()
        while not await request.is_disconnected():
            if not await run_in_threadpool(allowed):
                return
            async with self._changed:
                try:
                    await asyncio.wait_for(self._changed.wait_for(
                        lambda: self.version != seen or self.sessions_ended != ended), self.recheck_s)
                except TimeoutError:
                    pass
            ended = self.sessions_ended
            if self.version != seen:
                seen = self.version
                quiet_since = loop.time()
                yield _event("worklist", {"version": seen})
            elif loop.time() - quiet_since >= KEEPALIVE_S:
                quiet_since = loop.time()
                yield ": keep-alive\n\n"


def _event(name: str, data: dict[str, Any]) -> str:
    return f"event: {name}\ndata: {json.dumps(data)}\n\n"


router = APIRouter(prefix="/api/v1", tags=["live"])


@router.get("/events", response_class=StreamingResponse)
async def events(request: Request, user: User = Depends(require_roles("radiologist", "stroke", "admin"))
                 ) -> StreamingResponse:
    """Server-sent events: ``worklist`` whenever a study arrives, a result lands or a study is claimed."""
    hub: LiveHub = request.app.state.live
    return StreamingResponse(hub.stream(request, lambda: still_authenticated(request)),
                             media_type="text/event-stream",
                             headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})
