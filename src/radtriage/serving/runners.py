"""Where the pipelines run: a Ray Serve application, or the same pipelines in-process.

Both take ``(pipeline_ids, paths, key_dir)`` (the series' files in the spool, the folder for its key images,
both on this machine) and give ``{pipeline_id: outcome}``
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
from radtriage.serving.app import APP_NAME, build_app, run_one
from radtriage.serving.cluster import check_versions, connect, expected_versions
from radtriage.serving.transport import SHARED_PATH, ShippedSeries, compress_level, land_key_images, pack_series

log = logging.getLogger(__name__)


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
    """The pipelines as a Ray Serve application on a local Ray this process starts, or on a cluster.

    Under ``inference.transport: object_store`` each call puts the series into Ray's object store once
    (`transport.pack_series`) and writes the key images that come back into ``key_dir`` on this machine."""

    def __init__(self, specs: list[PipelineSpec], settings: Settings) -> None:
        from ray import serve

        from radtriage.logs import adopt_ray_logging

        adopt_ray_logging()  # after Ray's import (it installs its own handlers), before ray.init
        inf = settings.inference
        self.started_ray = connect(settings)
        local = self.started_ray and not (inf.ray_address or os.environ.get("RAY_ADDRESS"))
        self.transport, self.timeout_s = inf.transport, inf.call_timeout_s
        self.level = compress_level(inf.compress_level, local_ray=local)
        self.expect = expected_versions(specs, inf.models_dir)
        serve.start(proxy_location="Disabled")
        self.handle = serve.run(build_app(specs, settings), name=APP_NAME, route_prefix=None)
        try:
            check_versions(self.expect, self.handle.versions.remote().result(timeout_s=self.timeout_s))
        except BaseException:
            self.close()
            raise

    def __call__(self, pipeline_ids: list[str], paths: list[str], key_dir: str | None) -> dict[str, dict[str, Any]]:
        if self.transport == SHARED_PATH:
            return self._answer(self.handle.remote(pipeline_ids, paths, key_dir, self.expect))
        import ray

        shipped = ShippedSeries(ray.put(pack_series(paths, self.level)))
        outcomes = self._answer(self.handle.remote(pipeline_ids, shipped, None, self.expect))
        return land_key_images(outcomes, Path(key_dir)) if key_dir else outcomes

    def _answer(self, response: Any) -> dict[str, dict[str, Any]]:
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
