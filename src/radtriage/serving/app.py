"""The Ray Serve application: one deployment per pipeline, composed under one ingress.

``build_app(specs, settings)`` binds, for each pipeline spec, a
`PipelineDeployment` (its model loaded once per replica; requests batched
with ``@serve.batch``; CPUs, GPUs, replicas and batch size from
``settings.inference``), and an `Ingress` that fans a series out to the
pipelines it matched. A request carries the series as `transport.ShippedSeries`
(a reference into Ray's object store; key images come back as bytes) or, under
``inference.transport: shared_path``, as paths every node can open; either way
pixels never pass through the ingress. It also carries the versions the gateway
expects, and a replica running another radtriage or model refuses it
(`cluster.version_problems`).
"""

from __future__ import annotations

import asyncio
import logging
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ray import serve
from ray.serve.handle import DeploymentHandle

from radtriage.config.settings import Settings
from radtriage.inference.card import ModelCardError, load_card
from radtriage.inference.runner import OutsideValidatedRange, PipelineError, TaskRunner
from radtriage.pipelines import PipelineSpec
from radtriage.serving.cluster import version_problems, versions
from radtriage.serving.transport import PackedSeries, ShippedSeries, ship_key_images, unpack_series

APP_NAME = "radtriage"
log = logging.getLogger(__name__)


def run_one(runner: TaskRunner, series: Sequence[Any], key_dir: str | None) -> dict[str, Any]:
    """A pipeline's outcome as plain data: ``{"ok": True, "result": ...}`` or ``{"ok": False, "error": ...}``
    (with ``"not_applicable": True`` when the series is outside the model's validated range: no result, no retry).
    ``series``: instance paths, or datasets already read."""
    try:
        result = runner.run(series, Path(key_dir) if key_dir else None)
    except OutsideValidatedRange as exc:
        return {"ok": False, "not_applicable": True, "error": str(exc)}
    except PipelineError as exc:
        return {"ok": False, "error": str(exc)}
    return {"ok": True, "result": result.model_dump(mode="json")}


def run_shipped(runner: TaskRunner, packed: PackedSeries) -> dict[str, Any]:
    """`run_one` on a series that came through the object store; key images drawn in a folder of this
    node's, removed at once, and returned as bytes (`transport.ship_key_images`)."""
    try:
        datasets = unpack_series(packed)
    except ValueError as exc:
        return {"ok": False, "error": f"series could not be read: {exc}"}
    with tempfile.TemporaryDirectory(prefix="radtriage-keys-") as folder:
        return ship_key_images(run_one(runner, datasets, folder), Path(folder))


Request = tuple[Any, str | None]  # (instance paths or a PackedSeries, key image folder under shared_path)


@serve.deployment(max_ongoing_requests=16, logging_config={"enable_access_log": False})
class PipelineDeployment:
    def __init__(self, spec: dict[str, Any], models_dir: str, threads: int, max_batch_size: int,
                 batch_wait_timeout_s: float, gpus: float = 0.0) -> None:
        self.runner = TaskRunner(PipelineSpec.model_validate(spec), Path(models_dir), threads=threads, gpus=gpus)
        self.versions = versions(self.runner.model.card)
        self.run.set_max_batch_size(max_batch_size)
        self.run.set_batch_wait_timeout_s(batch_wait_timeout_s)

    @serve.batch(max_batch_size=4, batch_wait_timeout_s=0.01)
    async def run(self, requests: list[Request]) -> list[dict[str, Any]]:
        # one replica, one model session: the batch runs series after series (each is a batch of slices)
        return [run_shipped(self.runner, series) if isinstance(series, PackedSeries)
                else run_one(self.runner, series, key_dir) for series, key_dir in requests]

    async def __call__(self, series: ShippedSeries | list[str], key_dir: str | None,
                       expect: dict[str, str] | None = None) -> dict[str, Any]:
        refused = version_problems(self.runner.spec.id, expect, self.versions)
        if refused:
            return {"ok": False, "error": "version mismatch: " + "; ".join(refused)}
        if isinstance(series, ShippedSeries):
            return await self.run((await series.ref, None))  # fetched once to this node, from the gateway's
        return await self.run((series, key_dir))

    def get_versions(self) -> dict[str, str]:
        return self.versions


@serve.deployment(max_ongoing_requests=64, logging_config={"enable_access_log": False})
class Ingress:
    def __init__(self, pipelines: dict[str, DeploymentHandle]) -> None:
        self.pipelines = pipelines

    async def __call__(self, pipeline_ids: list[str], series: ShippedSeries | list[str], key_dir: str | None,
                       expect: dict[str, dict[str, str]] | None = None) -> dict[str, dict[str, Any]]:
        unknown = [p for p in pipeline_ids if p not in self.pipelines]
        calls = {p: self.pipelines[p].remote(series, f"{key_dir}/{p}" if key_dir else None, (expect or {}).get(p))
                 for p in pipeline_ids if p in self.pipelines}
        done = await asyncio.gather(*calls.values())
        out = dict(zip(calls, done, strict=True))
        out.update({p: {"ok": False, "error": f"pipeline {p} is not deployed"} for p in unknown})
        return out

    async def versions(self) -> dict[str, dict[str, str]]:
        """Each deployed pipeline's versions, as one of its replicas reports them (the start-up handshake)."""
        found = await asyncio.gather(*(h.get_versions.remote() for h in self.pipelines.values()))
        return dict(zip(self.pipelines, found, strict=True))


def build_app(specs: list[PipelineSpec], settings: Settings) -> serve.Application:
    """The application graph for these pipeline specs."""
    inf = settings.inference
    bound = {}
    for spec in specs:
        try:  # a pipeline whose model is missing or altered is not deployed; its jobs fail with the reason
            load_card(inf.models_dir / spec.model)
        except ModelCardError as exc:
            log.error("pipeline %s not deployed: %s", spec.id, exc)
            continue
        res = inf.resources(spec.id)
        bound[spec.id] = PipelineDeployment.options(
            name=f"pipeline-{spec.id}",
            num_replicas=res.replicas,
            ray_actor_options={"num_cpus": res.num_cpus, "num_gpus": res.num_gpus, "resources": dict(res.resources)},
        ).bind(spec.model_dump(mode="json", by_alias=True), str(inf.models_dir.resolve()), res.threads, res.max_batch_size,
               res.batch_wait_timeout_s, res.num_gpus)
    return Ingress.options(ray_actor_options={"num_cpus": 0.05}).bind(bound)
