"""`create_app()`: the FastAPI application factory (no import-time state)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from radtriage import __version__
from radtriage.api import alerts, dicomweb, dicomweb_read, health, live, pages, session, studies, worklist
from radtriage.api import audit as audit_api
from radtriage.api import reports as reports_api
from radtriage.api import conflicts as conflicts_api
from radtriage.api import dose as dose_api
from radtriage.api import dose_page
from radtriage.api import dose_pregnancy
from radtriage.api import exports as exports_api
from radtriage.api import recognition as recognition_api
from radtriage.api import forward as forward_api
from radtriage.api import models as models_api
from radtriage.api import shadow as shadow_api
from radtriage.api import share_dicomweb, share_issue_page, share_pages
from radtriage.api import shares as shares_api
from radtriage.api.auth import LoginLimiter
from radtriage.api.operator_pages import OperatorPagesGuard
from radtriage.api.problems import install_problem_handlers
from radtriage.db import worklist as worklist_db
from radtriage.service import Runtime, Services


def create_app(services: Services, runtime: Runtime | None = None) -> FastAPI:
    """Build the API around already-built ``services`` (and the running listener)."""
    hub = live.LiveHub(lambda: worklist_db.last_change(services.db))

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await hub.start()
        yield
        await hub.stop()

    app = FastAPI(
        title="radtriage",
        version=__version__,
        description="AI radiology triage. AI results are an aid, not a diagnosis.",
        lifespan=lifespan,
    )
    auth = services.settings.auth
    app.state.services = services
    app.state.runtime = runtime
    app.state.live = hub
    app.state.alerts = services.alerts
    app.state.login_limiter = LoginLimiter.from_settings(services.db, auth)
    install_problem_handlers(app)
    reports_api.install(app)  # the report templates, each rendered against sample data: a bad one stops start-up
    app.add_middleware(OperatorPagesGuard, enabled=services.settings.http_is_exposed)
    for resource in (health, dicomweb, dicomweb_read, session, worklist, studies, audit_api, live, alerts,
                     conflicts_api, shadow_api, models_api, exports_api, forward_api, dose_api, dose_pregnancy, reports_api,
                     recognition_api, dose_page, shares_api, share_pages, share_dicomweb,
                     share_issue_page, pages):  # one router per resource; the pages last
        app.include_router(resource.router)
    app.mount("/static", StaticFiles(directory=pages.STATIC_DIR), name="static")
    return app
