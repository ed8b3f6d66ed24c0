"""`create_app()`: the FastAPI application factory (no import-time state)."""

from __future__ import annotations

from fastapi import FastAPI

from radtriage import __version__
from radtriage.api import dicomweb, health
from radtriage.api.problems import install_problem_handlers
from radtriage.service import Runtime, Services


def create_app(services: Services, runtime: Runtime | None = None) -> FastAPI:
    """Build the API around already-built ``services`` (and the running listener)."""
    app = FastAPI(
        title="radtriage",
        version=__version__,
        description="AI radiology triage. AI results are an aid, not a diagnosis.",
    )
    app.state.services = services
    app.state.runtime = runtime
    install_problem_handlers(app)
    app.include_router(health.router)
    app.include_router(dicomweb.router)
    return app
