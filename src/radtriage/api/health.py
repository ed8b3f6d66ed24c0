"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

import shutil

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text

from radtriage.api.problems import problem
from radtriage.api.deps import services_of

router = APIRouter(tags=["operations"])


@router.get("/healthz")
def healthz() -> dict[str, str]:
    """The process is alive."""
    return {"status": "ok"}


@router.get("/readyz")
def readyz(request: Request) -> Response:
    """Ready to accept studies: database reachable, spool writable with room, listener up."""
    services = services_of(request)
    checks: dict[str, str] = {}
    try:
        with services.db.read() as conn:
            conn.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except Exception as exc:  # noqa: BLE001
        checks["database"] = f"error: {type(exc).__name__}"
    free = shutil.disk_usage(services.spool.root).free
    checks["spool"] = "ok" if free >= services.settings.min_free_bytes else "low on space"
    runtime = request.app.state.runtime
    if runtime is not None:
        checks["dicom_listener"] = "ok" if runtime.started else "stopped"
    if all(v == "ok" for v in checks.values()):
        return JSONResponse({"status": "ready", "checks": checks})
    return problem(503, "Not ready", "a dependency is not ready", checks=checks)


@router.get("/metrics")
def metrics(request: Request) -> Response:
    """Prometheus exposition of the service's counters and histograms (all listener processes summed)."""
    registry = services_of(request).metrics.registry
    listeners = getattr(request.app.state.runtime, "listeners", None)
    if listeners is not None:  # the other listener processes' counts, summed in
        registry = listeners.summed(registry)
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
