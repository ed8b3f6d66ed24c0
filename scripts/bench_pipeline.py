#!/usr/bin/env python3
"""Benchmark the inference graph: series ready -> result, through Ray Serve and in-process.

What it measures
----------------
Two radtriage runtimes (listener, assembly, dispatcher) started by this script in
temporary data directories, one with the pipelines on a local Ray Serve application
(``--transport``, default object_store: the series through Ray's object store) and one
with the same pipelines in this process. Synthetic CT heads (512x512, 4 mm, up to 32
slices; soft-tissue main series only; ``--distinct`` heads made, every study a copy
with new UIDs) are C-STOREd by dcmtk's ``storescu``. For every study the time from its
series becoming ready (the job ledger row) to its result being recorded is read back
from the database, so claim, load, inference, post-processing and recording are all in it.

* Rounds (``--rounds``, 5), Ray and in-process interleaved and their order alternating,
  so that both meet the same machine: in each, ``--per-round`` (20) studies sent one after
  another, each waiting for its result (latency), then ``--burst`` (8) sent at once with 4
  jobs in flight (studies per minute from the first send to the last result).
* The Ray overhead is ray p95 / in-process p95 per round; printed as the median of the
  rounds with their range (target <= 1.15). Studies per minute likewise.

Start-up (Ray, deployments, model loading) and a first study per runtime are not timed.
The last line is ``RESULT overhead_ratio=<median> overhead_min= overhead_max= ray_p95_s=
inproc_p95_s= studies_per_min=<Ray, median> inproc_studies_per_min= studies=<n per mode>``.

    python scripts/bench_pipeline.py [--rounds 5] [--per-round 20] [--burst 8] [--transport object_store|shared_path]
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


def clones(heads: list[list[Path]], root: Path, n: int) -> list[list[Path]]:
    """``n`` studies cut from ``heads`` in turn, each with new UIDs (timing needs many studies, not many heads)."""
    import pydicom
    from pydicom.uid import generate_uid

    out = []
    for i in range(n):
        study, series, folder = generate_uid(), generate_uid(), root / f"study-{i:04d}"
        folder.mkdir(parents=True)
        files = []
        for j, src in enumerate(heads[i % len(heads)]):
            ds = pydicom.dcmread(src)
            ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
            ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
            ds.AccessionNumber = f"BP{i:06d}"
            ds.save_as(folder / f"{j:03d}.dcm")
            files.append(folder / f"{j:03d}.dcm")
        out.append(files)
    return out


class Mode:
    """A radtriage runtime (listener, assembly, dispatcher) with its pipelines on Ray Serve or in this process."""

    def __init__(self, transport: str | None, models: Path, work: Path, compress_level: int | None,
                 burst: int) -> None:
        from radtriage.config.settings import load_settings
        from radtriage.service import Runtime, build_services

        self.name = f"ray ({transport})" if transport else "in-process"
        data = work / {None: "inproc", "object_store": "ray", "shared_path": "ray-sp"}[transport]  # short: Ray's sockets
        self.settings = load_settings(
            config_file=work / "absent.yaml", data_dir=data, dicom_host="127.0.0.1", dicom_port=0,
            quiet_period_s=0.2, stable_age_s=10, assembly_poll_s=0.05, min_free_bytes=0,
            max_associations=burst + 2,  # a burst's senders all at once
            inference={"enabled": True, "use_ray": transport is not None, "transport": transport or "object_store",
                       "compress_level": compress_level, "models_dir": str(models), "in_flight": 1, "poll_s": 0.05,
                       "default": {"threads": 2}},  # 0.25 CPU per deployment: four pipelines and the ingress fit on 2 cores
        )
        self.services = build_services(self.settings)
        self.runtime = Runtime(self.services)
        t = time.perf_counter()
        self.runtime.start()
        print(f"{self.name}: started in {time.perf_counter() - t:.1f} s (not timed)", flush=True)

    def send(self, files: list[Path]) -> None:
        subprocess.run([STORESCU, "-aet", "BENCH", "127.0.0.1", str(self.runtime.scp.port), *map(str, files)],
                       check=True, capture_output=True)

    def jobs(self) -> list[dict]:
        from radtriage.db import ledger

        return ledger.job_rows(self.services.db)

    def wait_jobs(self, count: int, timeout: float = 900) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if len([j for j in self.jobs() if j["state"] in ("done", "failed", "no_ai")]) >= count:
                return
            time.sleep(0.05)
        raise TimeoutError(f"{self.name}: not {count} studies finished in {timeout} s")

    def in_flight(self, n: int) -> None:
        d = self.runtime.dispatcher
        d.stop()
        self.settings.inference.in_flight = n
        d._stop.clear()
        d.start()

    def latency_round(self, studies: list[list[Path]]) -> list[float]:
        """Studies one after another, each waiting for its result: series ready -> result recorded, seconds."""
        from radtriage.db import clock, ledger

        base = len(self.jobs())
        for i, files in enumerate(studies):
            self.send(files)
            self.wait_jobs(base + i + 1)
        out = []
        for job in self.jobs()[base:]:
            rows = ledger.result_rows(self.services.db, job_id=job["id"])
            if not rows:
                raise RuntimeError(f"{self.name}: job {job['id']} ended {job['state']} without a result")
            out.append((clock.aware(rows[0]["created_at"]) - clock.aware(job["created_at"])).total_seconds())
        return out

    def burst_round(self, studies: list[list[Path]]) -> float:
        """All at once (one storescu each), 4 in flight: studies per minute from the first send to the last result."""
        self.in_flight(4)
        base = len(self.jobs())
        t0 = time.monotonic()
        procs = [subprocess.Popen([STORESCU, "-aet", "BENCH", "127.0.0.1", str(self.runtime.scp.port), *map(str, f)],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) for f in studies]
        errors = [p.communicate()[1] for p in procs]
        if any(p.returncode for p in procs):
            raise RuntimeError(f"{self.name}: a sender failed: {errors[0].decode(errors='replace')[-300:]}")
        self.wait_jobs(base + len(studies))
        wall = time.monotonic() - t0
        self.in_flight(1)
        return len(studies) / wall * 60

    def failed(self) -> int:
        return len([j for j in self.jobs() if j["state"] == "failed"])

    def stop(self) -> None:
        self.runtime.stop()
        self.services.close()


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):.3f} (rounds {min(values):.3f}-{max(values):.3f})"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--per-round", type=int, default=20, help="studies one after another per round and mode")
    p.add_argument("--burst", type=int, default=8, help="studies sent at once per round and mode")
    p.add_argument("--distinct", type=int, default=6, help="synthetic heads made; the studies are cut from them")
    p.add_argument("--seed", type=int, default=11)
    p.add_argument("--models", type=Path, default=Path("models"))
    p.add_argument("--transport", choices=["object_store", "shared_path"], default="object_store")
    p.add_argument("--compress-level", type=int, choices=range(10), help="default: the service's (0 on a local Ray)")
    args = p.parse_args(argv)
    if STORESCU is None:
        print("dcmtk's storescu is needed (apt-get install dcmtk)", file=sys.stderr)
        return 2
    per_mode = args.rounds * (args.per_round + args.burst) + 1
    with tempfile.TemporaryDirectory(prefix="bench-pipeline-") as tmp:
        work = Path(tmp)
        heads = write_heads(work / "heads", args.distinct, args.seed)
        modes = {"ray": Mode(args.transport, args.models.resolve(), work, args.compress_level, args.burst),
                 "inproc": Mode(None, args.models.resolve(), work, None, args.burst)}
        try:
            studies = {m: iter(clones(heads, work / m, per_mode)) for m in modes}
            for m, mode in modes.items():  # a study of its own: the first inference of each replica is slower
                mode.latency_round([next(studies[m])])
            lat: dict[str, list[list[float]]] = {m: [] for m in modes}
            rate: dict[str, list[float]] = {m: [] for m in modes}
            for r in range(args.rounds):  # interleaved, the order alternating: both see the same machine
                for m in (["ray", "inproc"] if r % 2 == 0 else ["inproc", "ray"]):
                    lat[m].append(modes[m].latency_round([next(studies[m]) for _ in range(args.per_round)]))
                    rate[m].append(modes[m].burst_round([next(studies[m]) for _ in range(args.burst)]))
                    print(f"round {r + 1} {modes[m].name}: p50 {percentile(lat[m][-1], 50):.2f} s, "
                          f"p95 {percentile(lat[m][-1], 95):.2f} s, burst {rate[m][-1]:.1f} studies/min", flush=True)
            failed = {m: mode.failed() for m, mode in modes.items()}
        finally:
            for mode in modes.values():
                mode.stop()
    ratios = [percentile(a, 95) / percentile(b, 95) for a, b in zip(lat["ray"], lat["inproc"], strict=True)]
    pooled = {m: [x for rnd in lat[m] for x in rnd] for m in modes}
    for m in modes:
        print(f"{modes[m].name}: {len(pooled[m])} studies, p50 {percentile(pooled[m], 50):.2f} s, "
              f"p95 {percentile(pooled[m], 95):.2f} s, failed {failed[m]}; round p95s "
              f"{spread([percentile(x, 95) for x in lat[m]])} s; studies/min {spread(rate[m])}")
    print(f"Ray overhead (ray p95 / in-process p95, per round): {spread(ratios)}; target <= 1.15")
    print(f"load average {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    print(f"RESULT overhead_ratio={statistics.median(ratios):.3f} overhead_min={min(ratios):.3f} "
          f"overhead_max={max(ratios):.3f} ray_p95_s={percentile(pooled['ray'], 95):.3f} "
          f"inproc_p95_s={percentile(pooled['inproc'], 95):.3f} studies_per_min={statistics.median(rate['ray']):.1f} "
          f"inproc_studies_per_min={statistics.median(rate['inproc']):.1f} studies={len(pooled['ray'])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
