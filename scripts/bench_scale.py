#!/usr/bin/env python3
"""Benchmark: does throughput grow with inference nodes?

What it measures
----------------
Studies per minute through the whole of radtriage (C-STORE, spool, assembly, the
dispatcher, Ray Serve, recording the result) on a simulated Ray cluster
(`ray.cluster_utils.Cluster`, all on this machine) with 1, 2, 4 and 8 worker nodes.

* Each worker node holds one replica of a stand-in model (custom resource ``standin``)
  that fetches the series from the object store, waits ``--latency`` seconds (1 s)
  without using a CPU (``asyncio.sleep``) and answers a real ICH result (recorded once
  from the reference model on one of these series). One series at a time per replica
  (``max_ongoing_requests=1``), like a model on one GPU. So the 2 cores of this machine do
  not cap the measurement: it measures radtriage's and Ray's scheduling, not the model.
  Only the deployment is replaced (``radtriage.serving.runners.build_app`` in this
  process); the ingress, the transport, the version handshake and everything before and
  after are the service's.
* The gateway runs in this process (`radtriage.service.Runtime`: the DICOM listener, assembly,
  the dispatcher) with ``inference.in_flight`` = 2 x nodes (jobs dispatched at once: an
  operator sizes it to the cluster) on SQLite.
* ``--studies`` (200) synthetic CT heads of ``--slices`` (32) slices, 256 x 256: one
  synthesized head cloned with new UIDs; each study sent in its own association by
  ``storescu``, four at a time (a series is complete when its association ends).
* Throughput: studies / (last result recorded - first instance sent) x 60, the results'
  times read from the database. Also printed: when the last instance was acknowledged
  (ingest), when the first result came, and studies per minute from the first result to
  the last.

The last line: ``RESULT studies_per_min_1=.. studies_per_min_2=.. studies_per_min_4=..
studies_per_min_8=.. efficiency_8=..`` where efficiency_8 = throughput at 8 / (8 x at 1).

Usage: ``.venv/bin/python scripts/bench_scale.py [--nodes 1,2,4,8] [--studies 200]``.
Needs dcmtk's ``storescu``. About 3 GB of memory at 8 nodes.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

SENDERS = 4


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_studies(root: Path, studies: int, slices: int) -> list[Path]:
    """``studies`` folders of ``slices`` CT head instances each: one synthetic head, cloned with new UIDs."""
    import pydicom
    from pydicom.uid import generate_uid

    from radtriage.synth import synthesize

    soft: list[Path] = []
    for seed in range(7, 17):  # a head whose thin slices give at least ``slices``
        shutil.rmtree(root / "source", ignore_errors=True)
        synthesize("ct-head", 1, seed, root / "source", {"matrix": 256})
        soft = sorted((root / "source").rglob("002_*.dcm"))  # series 2: the soft-tissue axial series the model reads
        if len(soft) >= slices:
            break
    middle = max(0, (len(soft) - slices) // 2)
    template = [pydicom.dcmread(p) for p in soft[middle:middle + slices]]
    folders = []
    for i in range(studies):
        study, ser, folder = generate_uid(), generate_uid(), root / f"study-{i:04d}"
        folder.mkdir(parents=True)
        for j, src in enumerate(template):
            ds = copy.deepcopy(src)
            ds.StudyInstanceUID, ds.SeriesInstanceUID = study, ser
            ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
            ds.PatientID, ds.AccessionNumber = f"SYNTH-SCALE-{i:04d}", f"SC{i:06d}"
            ds.save_as(folder / f"{j:03d}.dcm")
        folders.append(folder)
    print(f"  {studies} studies of {len(template)} slices written", flush=True)
    return folders


def recorded_outcome(folder: Path, specs: list[Any], models_dir: Path) -> dict[str, Any]:
    """What the reference ICH pipeline answers on one of these series: the stand-in answers it every time."""
    from radtriage.inference.runner import TaskRunner
    from radtriage.serving.app import run_one

    spec = next(s for s in specs if s.task == "ich")
    outcome = run_one(TaskRunner(spec, models_dir, threads=1), sorted(folder.glob("*.dcm")), None)
    assert outcome["ok"], outcome
    return outcome


def stand_in_app(outcome: dict[str, Any], latency: float, expect: dict[str, dict[str, str]]) -> Any:
    """`build_app`'s replacement: the service's `Ingress` over one stand-in deployment per pipeline."""
    from ray import serve

    from radtriage.serving.app import Ingress

    @serve.deployment(max_ongoing_requests=1, logging_config={"enable_access_log": False})
    class StandIn:
        def __init__(self, versions: dict[str, str]) -> None:
            self.versions = versions

        async def __call__(self, series: Any, key_dir: str | None, expect: Any = None) -> dict[str, Any]:
            ref = getattr(series, "ref", None)
            if ref is not None:
                await ref  # the series comes to this node, as a model's would
            await asyncio.sleep(latency)
            return outcome

        def get_versions(self) -> dict[str, str]:
            return self.versions

    def build(specs: list[Any], settings: Any) -> Any:
        nodes = settings.inference.deployments[specs[0].id].replicas
        bound = {s.id: StandIn.options(name=f"pipeline-{s.id}", num_replicas=nodes,
                                       ray_actor_options={"num_cpus": 0, "resources": {"standin": 1}})
                 .bind(expect[s.id]) for s in specs}
        return Ingress.options(ray_actor_options={"num_cpus": 0}).bind(bound)

    return build


def send_all(port: int, folders: list[Path]) -> float:
    """Each study in its own association (as a scanner sends one), four at a time; the time the last returned."""
    from concurrent.futures import ThreadPoolExecutor

    exe = shutil.which("storescu")
    if exe is None:
        raise SystemExit("storescu (dcmtk) is needed: sh scripts/peers.sh")

    def send(folder: Path) -> None:
        r = subprocess.run([exe, "-aet", "SCALE", "-aec", "RADTRIAGE", "127.0.0.1", str(port),
                            *map(str, sorted(folder.glob("*.dcm")))], env={**os.environ, "TCP_NODELAY": "1"},
                           capture_output=True, timeout=600)
        if r.returncode != 0:
            raise SystemExit(f"storescu failed: {r.stderr.decode(errors='replace')[-500:]}")

    with ThreadPoolExecutor(SENDERS) as pool:
        list(pool.map(send, folders))
    return time.monotonic()


def one_size(nodes: int, folders: list[Path], work: Path, latency: float) -> dict[str, float]:
    import ray
    import yaml
    from ray.cluster_utils import Cluster

    import radtriage.serving.runners as runners
    from radtriage.config import load_settings
    from radtriage.db import clock, ledger
    from radtriage.inference.tasks import OPS
    from radtriage.pipelines import load_pipelines
    from radtriage.serving.cluster import expected_versions
    from radtriage.service import Runtime, build_services

    repo = Path(__file__).resolve().parent.parent
    pipelines = work / f"pipelines-{nodes}"
    pipelines.mkdir()
    spec = yaml.safe_load((repo / "pipelines" / "stroke_ich.yaml").read_text(encoding="utf-8"))
    spec["monitor"] = {"enabled": False}  # every study answers positive: the monitor would (rightly) demote it
    (pipelines / "stroke_ich.yaml").write_text(yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")
    specs = load_pipelines(pipelines, ops=OPS)
    models = repo / "models"
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    for _ in range(nodes):
        cluster.add_node(num_cpus=1, resources={"standin": 1})
    runners.build_app = stand_in_app(recorded_outcome(folders[0], specs, models), latency,
                                     expected_versions(specs, models))
    settings = load_settings(
        config_file=work / "absent.yaml", data_dir=work / f"data-{nodes}", dicom_host="127.0.0.1",
        dicom_port=free_port(), min_free_bytes=0, stable_age_s=2.0, quiet_period_s=0.5,
        inference={"pipelines_dir": str(pipelines), "models_dir": str(models), "ray_address": cluster.address,
                   "trusted_network": True,  # every node is on this machine
                   "in_flight": 2 * nodes, "deployments": {s.id: {"replicas": nodes} for s in specs}})
    services = build_services(settings)
    runtime = Runtime(services)
    try:
        runtime.start()
        t0, wall0 = time.monotonic(), time.time()
        acked = send_all(runtime.scp.port, folders)
        end = time.monotonic() + 3600
        while time.monotonic() < end:
            jobs = ledger.job_rows(services.db)
            if len(jobs) >= len(folders) and all(j["state"] in ("done", "failed", "no_ai") for j in jobs):
                break
            time.sleep(0.1)
        failed = [j for j in jobs if j["state"] != "done"]
        if failed:
            raise SystemExit(f"{len(failed)} jobs did not finish well: {failed[:3]}")
        # when each result was recorded, from the database (the loop above only starts once all is sent)
        done = sorted(clock.aware(r["created_at"]).timestamp() - wall0 for r in ledger.result_rows(services.db))
        return {"studies_per_min": len(folders) / done[-1] * 60, "ingest_s": acked - t0, "total_s": done[-1],
                "first_result_s": done[0],
                "inference_per_min": (len(done) - 1) / max(done[-1] - done[0], 1e-9) * 60}
    finally:
        runtime.stop()
        services.close()
        ray.shutdown()
        cluster.shutdown()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--nodes", default="1,2,4,8", help="worker node counts (default 1,2,4,8)")
    p.add_argument("--studies", type=int, default=200)
    p.add_argument("--slices", type=int, default=32)
    p.add_argument("--latency", type=float, default=1.0, help="the stand-in model's seconds per study")
    args = p.parse_args(argv)
    sizes = [int(n) for n in args.nodes.split(",")]
    with tempfile.TemporaryDirectory(prefix="bench_scale_") as tmp:
        work = Path(tmp)
        folders = make_studies(work / "studies", args.studies, args.slices)
        results = {}
        for n in sizes:
            r = one_size(n, folders, work, args.latency)
            results[n] = r
            print(f"  {n} node(s): {r['studies_per_min']:.1f} studies/min end to end ({r['total_s']:.1f} s to the "
                  f"last result; last instance acknowledged at {r['ingest_s']:.1f} s, first result at "
                  f"{r['first_result_s']:.1f} s); first to last result {r['inference_per_min']:.1f} studies/min; "
                  f"ideal {60 / args.latency * n:.0f}", flush=True)
    line = " ".join(f"studies_per_min_{n}={r['studies_per_min']:.1f}" for n, r in results.items())
    if 1 in results and 8 in results:
        line += f" efficiency_8={results[8]['studies_per_min'] / (8 * results[1]['studies_per_min']):.2f}"
    print(f"load average {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    print(f"RESULT {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
