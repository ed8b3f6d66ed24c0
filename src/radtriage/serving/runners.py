"""Where the pipelines run: a Ray Serve application, or the same pipelines in-process.

Both take ``(pipeline_ids, paths, key_dir)`` and give ``{pipeline_id: outcome}``
where an outcome is ``{"ok": True, "result": TaskResult as JSON}`` or
``{"ok": False, "error": reason}``.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Protocol

from radtriage.config.settings import Settings
from radtriage.inference.runner import PipelineError, TaskRunner
from radtriage.pipelines import PipelineSpec
from radtriage.security import kept_secret
from radtriage.serving.app import APP_NAME, build_app, run_one

log = logging.getLogger(__name__)
# Ray puts sockets at <temp>/session_<date>_<time>_<usec>_<pid>/sockets/plasma_store (~62 characters
# after <temp>) and a Unix socket path may hold 107 bytes.
RAY_TMP_MAX = 44


class Runner(Protocol):
    def __call__(self, pipeline_ids: list[str], paths: list[str], key_dir: str | None) -> dict[str, dict[str, Any]]: ...

    def close(self) -> None: ...


class InProcessRunner:
    """Each pipeline's `TaskRunner` in this process (models loaded once)."""

    def __init__(self, specs: list[PipelineSpec], settings: Settings) -> None:
        inf = settings.inference
        self.runners: dict[str, TaskRunner] = {}
        self.errors: dict[str, str] = {}
        for spec in specs:
            try:
                res = inf.resources(spec.id)
                self.runners[spec.id] = TaskRunner(spec, inf.models_dir, threads=res.threads, gpus=res.num_gpus)
            except (PipelineError, OSError, ValueError) as exc:  # a missing model: that pipeline fails, others run
                self.errors[spec.id] = str(exc)
                log.error("pipeline %s cannot run: %s", spec.id, exc)

    def __call__(self, pipeline_ids: list[str], paths: list[str], key_dir: str | None) -> dict[str, dict[str, Any]]:
        out = {}
        for p in pipeline_ids:
            if p in self.runners:
                out[p] = run_one(self.runners[p], paths, f"{key_dir}/{p}" if key_dir else None)
            else:
                out[p] = {"ok": False, "error": self.errors.get(p, f"pipeline {p} is not loaded")}
        return out

    def close(self) -> None:
        self.runners.clear()


class RayRunner:
    """The pipelines as a Ray Serve application on a local Ray this process starts, or on a cluster."""

    def __init__(self, specs: list[PipelineSpec], settings: Settings) -> None:
        import ray
        from ray import serve

        from radtriage.logs import adopt_ray_logging

        adopt_ray_logging()  # after Ray's import (it installs its own handlers), before ray.init
        self.started_ray = False
        address = settings.inference.ray_address or os.environ.get("RAY_ADDRESS")
        if not ray.is_initialized():
            if address:
                ray.init(address=address, logging_level=logging.WARNING)
            else:
                tmp = (settings.data_dir / "ray").resolve()
                if len(str(tmp)) > RAY_TMP_MAX:  # Ray's Unix sockets live under it (107-byte limit)
                    raise ValueError(f"the data directory's path is too long for Ray's sockets ({len(str(tmp))} > "
                                     f"{RAY_TMP_MAX} characters in {tmp}): choose a shorter data_dir or set ray_address")
                tmp.mkdir(parents=True, exist_ok=True)
                os.environ.setdefault("RAY_TMPDIR", str(tmp))
                # Ray caches the token per process: one token for every local Ray this process starts
                # (an operator's RAY_AUTH_TOKEN wins), kept in the data directory rather than ~/.ray
                os.environ.setdefault("RAY_AUTH_TOKEN", kept_secret(tmp / "auth_token"))
                ray.init(include_dashboard=False, _temp_dir=str(tmp), logging_level=logging.WARNING,
                         configure_logging=False)
            self.started_ray = True
        serve.start(proxy_location="Disabled")
        self.handle = serve.run(build_app(specs, settings), name=APP_NAME, route_prefix=None)
        self.timeout_s = settings.inference.call_timeout_s

    def __call__(self, pipeline_ids: list[str], paths: list[str], key_dir: str | None) -> dict[str, dict[str, Any]]:
        response = self.handle.remote(pipeline_ids, paths, key_dir)
        try:
            return response.result(timeout_s=self.timeout_s)
        except TimeoutError:
            response.cancel()  # the replica stops working on it
            raise

    def close(self) -> None:
        import ray
        from ray import serve

        try:
            serve.delete(APP_NAME)
        finally:
            if self.started_ray:
                serve.shutdown()
                ray.shutdown()


def make_runner(specs: list[PipelineSpec], settings: Settings) -> Runner:
    return RayRunner(specs, settings) if settings.inference.use_ray else InProcessRunner(specs, settings)


def key_dir_for(settings: Settings, job_id: int) -> Path:
    """Where a job's key images go: under the data directory, never elsewhere."""
    return (settings.data_dir / "results" / f"job-{job_id}").resolve()
