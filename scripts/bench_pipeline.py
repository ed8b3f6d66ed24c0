#!/usr/bin/env python3
"""Benchmark the inference graph: series ready -> result, through Ray Serve and in-process.

What it measures
----------------
``--n`` (default 20) synthetic CT heads (512x512, 4 mm, up to 32 slices; soft-tissue
main series only) are C-STOREd by dcmtk's ``storescu`` to a radtriage runtime
(listener, assembly, dispatcher) started by this script in a temporary data
directory, once with the pipelines on a local Ray Serve application and once
with the same pipelines in this process. For every study the time from its
series becoming ready (the job ledger row) to its result being recorded is
read back from the database, so claim, load, inference, post-processing and
recording are all in it.

* Latency: studies sent one after another, each waiting for its result; p50 and p95.
* Throughput: another ``--n`` studies sent at once (one storescu each) with 4 jobs in
  flight; studies per minute from the first send to the last result.
* The Ray overhead ratio is ray p95 / in-process p95 (the issue's target: <= 1.15).
* ``--transport`` (default object_store): how the series reaches the replicas
  (``inference.transport``); ``both`` runs Ray once with each, object_store first.
  ``--compress-level`` sets ``inference.compress_level`` (zlib level of the instances sent
  through the object store; 0: sent as they are; default: the service's, 0 on a local Ray).

Start-up (Ray, deployments, model loading) is not timed. The last line is
``RESULT ray_p95_s=<n> inproc_p95_s=<n> overhead_ratio=<n> studies_per_min=<n>``
(throughput through Ray, with the first transport run), followed with ``both`` by
``shared_path_p95_s=<n> shared_path_studies_per_min=<n>``.

    python scripts/bench_pipeline.py [--n 20] [--models models] [--transport object_store|shared_path|both]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.helpers import dcmtk  # noqa: E402 - the repository's test helpers

STORESCU = dcmtk("storescu")  # dcmtk's, not the storescu pynetdicom puts in a virtualenv's bin


def write_heads(root: Path, n: int, seed: int) -> list[list[Path]]:
    from radtriage.synth import ct_head
    from radtriage.synth.dicom import CtSeries, make_study, write_ct_series

    studies = []
    for i in range(n):
        rng = np.random.default_rng([seed, i])
        head = ct_head.sample(rng, matrix=512, slice_thickness=4.0, max_slices=32)
        study = make_study(rng, i, "CT BRAIN NON-CONTRAST")
        series = CtSeries(2, "Head 4.0 H31s", "HEAD", "HEAD", "H31s")
        studies.append(write_ct_series(root / f"head-{i:02d}", rng, study, series, head.hu, head.spacing, head.origin))
    return studies


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def run_mode(transport: str | None, warmup: list[Path], studies: list[list[Path]], burst: list[list[Path]], models: Path,
             work: Path, compress_level: int | None = None) -> dict[str, float]:
    from radtriage.config.settings import load_settings
    from radtriage.db import clock, ledger
    from radtriage.service import Runtime, build_services

    use_ray, mode = transport is not None, f"ray ({transport})" if transport else "in-process"
    data = work / {None: "inproc", "object_store": "ray", "shared_path": "ray-sp"}[transport]  # short: Ray's sockets
    settings = load_settings(
        config_file=work / "absent.yaml", data_dir=data, dicom_host="127.0.0.1", dicom_port=0,
        quiet_period_s=0.2, stable_age_s=10, assembly_poll_s=0.05, min_free_bytes=0,
        max_associations=len(burst) + 2,  # the burst's senders all at once (the listener's default is 16)
        inference={"enabled": True, "use_ray": use_ray, "transport": transport or "object_store",
                   "compress_level": compress_level,
                   "models_dir": str(models), "in_flight": 1, "poll_s": 0.05,
                   "default": {"threads": 2}},  # 0.25 CPU per deployment: four pipelines and the ingress fit on 2 cores
    )
    services = build_services(settings)
    runtime = Runtime(services)
    t = time.perf_counter()
    runtime.start()
    print(f"{mode}: started in {time.perf_counter() - t:.1f} s (not timed)")

    def send(files: list[Path]) -> None:
        subprocess.run([STORESCU, "-aet", "BENCH", "127.0.0.1", str(runtime.scp.port), *map(str, files)],
                       check=True, capture_output=True)

    def wait_results(count: int, timeout: float = 900) -> list[dict]:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            jobs = [j for j in ledger.job_rows(services.db) if j["state"] in ("done", "failed", "no_ai")]
            if len(jobs) >= count:
                return jobs
            time.sleep(0.05)
        raise TimeoutError(f"only {len(jobs)} of {count} studies finished")

    def latencies() -> list[float]:
        out = []
        for job in ledger.job_rows(services.db):
            rows = ledger.result_rows(services.db, job_id=job["id"])
            if rows:
                out.append((clock.aware(rows[0]["created_at"]) - clock.aware(job["created_at"])).total_seconds())
        return out

    try:
        send(warmup)  # a study of its own: the first inference of each replica is slower
        wait_results(1)
        base = len(ledger.job_rows(services.db))
        for i, files in enumerate(studies):
            send(files)
            wait_results(base + i + 1)
        lat = latencies()[1:]  # the warm-up study left out
        failed = [j for j in ledger.job_rows(services.db) if j["state"] == "failed"]
        # throughput: everything at once, 4 in flight
        runtime.dispatcher.stop()
        settings.inference.in_flight = 4
        runtime.dispatcher._stop.clear()
        runtime.dispatcher.start()
        before = len(ledger.job_rows(services.db))
        t0 = time.monotonic()
        procs = [subprocess.Popen([STORESCU, "-aet", "BENCH", "127.0.0.1", str(runtime.scp.port), *map(str, f)],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) for f in burst]
        errors = [p.communicate()[1] for p in procs]
        refused = [e.decode(errors="replace")[-300:] or f"exit {p.returncode}" for p, e in zip(procs, errors)
                   if p.returncode]
        if refused:  # a study that never arrived would leave the wait below to time out
            raise RuntimeError(f"{len(refused)} of {len(burst)} senders failed; first: {refused[0]}")
        wait_results(before + len(burst))
        wall = time.monotonic() - t0
    finally:
        runtime.stop()
        services.close()
    res = {"p50": percentile(lat, 50), "p95": percentile(lat, 95), "per_min": len(burst) / wall * 60,
           "failed": len(failed)}
    print(f"{mode}: ready->result p50 {res['p50']:.2f} s, p95 {res['p95']:.2f} s "
          f"(n={len(lat)}, failed {len(failed)}); 4 in flight: {len(burst)} other studies in {wall:.1f} s "
          f"= {res['per_min']:.1f} studies/min (send time included)")
    return res


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=20)
    p.add_argument("--seed", type=int, default=11)
    p.add_argument("--models", type=Path, default=Path("models"))
    p.add_argument("--transport", choices=["object_store", "shared_path", "both"], default="object_store")
    p.add_argument("--compress-level", type=int, choices=range(10), help="default: the service's (0 on a local Ray)")
    args = p.parse_args(argv)
    if STORESCU is None:
        print("dcmtk's storescu is needed (apt-get install dcmtk)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="bench-pipeline-") as tmp:
        work = Path(tmp)
        heads = write_heads(work / "studies", 2 * args.n + 1, args.seed)
        warmup, studies, burst = heads[0], heads[1 : args.n + 1], heads[args.n + 1 :]
        transports = ["object_store", "shared_path"] if args.transport == "both" else [args.transport]
        inproc = run_mode(None, warmup, studies, burst, args.models.resolve(), work)
        rays = [run_mode(t, warmup, studies, burst, args.models.resolve(), work, args.compress_level)
                for t in transports]
    ray = rays[0]
    ratio = ray["p95"] / inproc["p95"]
    shared = f" shared_path_p95_s={rays[1]['p95']:.3f} shared_path_studies_per_min={rays[1]['per_min']:.1f}" \
        if len(rays) > 1 else ""
    print(f"RESULT ray_p95_s={ray['p95']:.3f} inproc_p95_s={inproc['p95']:.3f} overhead_ratio={ratio:.3f} "
          f"studies_per_min={ray['per_min']:.1f}{shared}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
