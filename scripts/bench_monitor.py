#!/usr/bin/env python3
"""Benchmark the model monitor's added time per recorded result, with 100,000 results in the database.

What it measures
----------------
A database (SQLite in a temporary folder; PostgreSQL in a fresh database on the local server,
``--pg-url``, dropped afterwards) is filled with ``--results`` (default 100,000) recorded results of the
four shipped pipelines (ICH 40%, nodule 25%, LVO 20%, bone age 15%; about 8% positive), each with its
job and routing header (scanner, kernel, thickness, kVp, pixel spacing), plus one "no AI" job per two
results (localizers, bone-kernel twins: what the monitor's refusal count scans) and readers' feedback on
one result in twenty. Then ``--n`` (default 300) new ICH results are recorded one at a time through the
dispatcher's path (`db.ledger.record_results`), and after each the monitor evaluates the pipeline as its
worker does (`Monitor.evaluate`: the new result, the refusals and failures since the window began, the
readers' verdicts, every signal, the gauges). The time of each evaluation is the monitor's added time per
recorded result (the dispatcher's own hook only marks the pipeline and wakes the worker: its time is
printed too). Refusals, failures, readers' verdicts and the input mix are measured at most every 10 s
(`monitor.watch.SLOW_S`); an evaluation that measures them is timed apart (``slow_refresh_ms``), and so
is the first one, which reads the whole window (again every 5 minutes).

    python scripts/bench_monitor.py [--results 100000] [--n 300] [--backend sqlite|postgresql|both]

One line per backend: ``RESULT monitor_ms_p95=<n> (<backend>) monitor_ms_p50=<n> hook_us_p95=<n> ...``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
PIPELINES = (("stroke_ich", "ich", 0.40), ("lung_nodule", "nodule", 0.25), ("stroke_lvo", "lvo", 0.20),
             ("bone_age", "bone_age", 0.15))
SCANNERS = (("GE MEDICAL SYSTEMS", "Revolution CT", "STANDARD", 120), ("SIEMENS", "SOMATOM Force", "Hr38", 120),
            ("CANON_MEC", "Aquilion ONE", "FC21", 100))


def header(i: int) -> dict[str, Any]:
    maker, model, kernel, kvp = SCANNERS[i % 3]
    return {"Modality": "CT", "Manufacturer": maker, "ManufacturerModelName": model, "ConvolutionKernel": kernel,
            "SliceThickness": (0.625, 1.25, 5.0)[i % 3], "KVP": kvp, "PixelSpacing": [0.45 + (i % 7) / 100] * 2}


def result_json(task: str, positive: bool, score: float) -> dict[str, Any]:
    key = {"ich": "ich", "lvo": "lvo", "nodule": "nodule", "bone_age": "difference_months"}[task]
    return {"task": task, "model_id": "m", "model_version": "1", "pipeline_version": "1.0.0", "positive": positive,
            "scores": {key: score, "threshold": 0.9}, "labels": {}, "findings": [], "timings_ms": {"model": 80.0}}


def fill(db: Any, n: int, chunk: int = 5000) -> None:
    """``n`` results (with studies, series, jobs), ``n / 2`` no-AI jobs and feedback on one result in twenty."""
    import random

    from radtriage.db import accounts
    from radtriage.db.tables import feedback, jobs, results, series, studies

    rng = random.Random(7)
    uid = accounts.add_user(db, "reader", "radiologist", "correct horse battery").id
    start = dt.datetime.now(dt.UTC) - dt.timedelta(days=60)
    pids = [p for p, _, _ in PIPELINES]
    weights = [w for _, _, w in PIPELINES]
    rid = 0
    for base in range(0, n, chunk):
        size = min(chunk, n - base)
        st, se, jb, rs, fb = [], [], [], [], []
        for k in range(base, base + size):
            at = start + dt.timedelta(seconds=50 * k)
            study = f"2.25.{k}"
            st.append({"id": k + 1, "study_uid": study, "created_at": at})
            se.append({"id": 2 * k + 1, "study_id": k + 1, "series_uid": f"{study}.1", "header": header(k),
                       "header_from_localizer": False, "state": "ready", "version": 1, "first_received_at": at,
                       "last_received_at": at, "storage_dir": "x"})
            se.append({"id": 2 * k + 2, "study_id": k + 1, "series_uid": f"{study}.2", "header": {"Modality": "CT"},
                       "header_from_localizer": False, "state": "ready", "version": 1, "first_received_at": at,
                       "last_received_at": at, "storage_dir": "x"})
            case = {"case_id": f"{study}.1-v1", "study_uid": study, "series_uid": f"{study}.1", "header": header(k),
                    "received_at": at.isoformat(), "instances_uri": "file:///x", "instance_count": 40}
            jb.append({"id": 2 * k + 1, "case_id": case["case_id"], "series_id": 2 * k + 1, "series_version": 1,
                       "state": "done", "attempts": 1, "case": case, "created_at": at, "updated_at": at})
            if k % 2 == 0:  # a localizer or bone twin: no AI applicable
                jb.append({"id": 2 * k + 2, "case_id": f"{study}.2-v1", "series_id": 2 * k + 2, "series_version": 1,
                           "state": "no_ai", "attempts": 1, "case": {**case, "header": {"Modality": "CT"}},
                           "last_error": "no AI applicable (near: stroke_ich: ImageType LOCALIZER)",
                           "created_at": at, "updated_at": at})
            pid = rng.choices(pids, weights)[0]
            task = dict((p, t) for p, t, _ in PIPELINES)[pid]
            positive = rng.random() < 0.08
            rid += 1
            rs.append({"id": rid, "job_id": 2 * k + 1, "pipeline_id": pid, "pipeline_version": "1.0.0",
                       "study_uid": study, "series_uid": f"{study}.1", "task": task, "model_id": "m",
                       "model_version": "1", "positive": positive, "priority": "STAT" if positive else "ROUTINE",
                       "result": result_json(task, positive, 0.97 if positive else rng.uniform(0.2, 0.8)),
                       "created_at": at, "state": "live"})
            if k % 20 == 0:
                fb.append({"study_uid": study, "result_id": rid, "finding_code": task, "user_id": uid,
                           "verdict": "agree" if rng.random() < 0.8 else "disagree", "created_at": at})
        with db.write() as conn:
            for table, rows in ((studies, st), (series, se), (jobs, jb), (results, rs), (feedback, fb)):
                conn.execute(table.insert(), rows)
    if db.engine.dialect.name == "postgresql":  # the ids were given: move the sequences past them
        with db.write() as conn:
            for t in ("studies", "series", "jobs", "results", "feedback"):
                conn.exec_driver_sql(f"SELECT setval(pg_get_serial_sequence('{t}', 'id'), (SELECT max(id) FROM {t}))")
            conn.exec_driver_sql("ANALYZE")


def record_one(db: Any, k: int, positive: bool) -> None:
    """Record one new ICH result as the dispatcher does (a job, then `record_results`)."""
    from radtriage.db import ledger
    from radtriage.db.tables import jobs, series, studies

    now = dt.datetime.now(dt.UTC)
    study = f"2.25.new.{k}"
    case = {"case_id": f"{study}.1-v1", "study_uid": study, "series_uid": f"{study}.1", "header": header(k),
            "received_at": now.isoformat(), "instances_uri": "file:///x", "instance_count": 40}
    with db.write() as conn:
        sid = conn.execute(studies.insert().values(study_uid=study, created_at=now)).inserted_primary_key[0]
        ser = conn.execute(series.insert().values(
            study_id=sid, series_uid=f"{study}.1", header=header(k), header_from_localizer=False, state="ready",
            version=1, first_received_at=now, last_received_at=now, storage_dir="x")).inserted_primary_key[0]
        job = conn.execute(jobs.insert().values(case_id=case["case_id"], series_id=ser, series_version=1,
                                                state="running", attempts=1, case=case, created_at=now,
                                                updated_at=now)).inserted_primary_key[0]
    ledger.record_results(db, job, [{"pipeline_id": "stroke_ich", "pipeline_version": "1.0.0", "study_uid": study,
                                     "series_uid": f"{study}.1", "task": "ich", "model_id": "m", "model_version": "1",
                                     "positive": positive, "priority": "STAT" if positive else "ROUTINE",
                                     "result": result_json("ich", positive, 0.97 if positive else 0.3 + (k % 11) / 20),
                                     "state": "live"}])


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if len(values) > 1 else values[0]


def run(backend: str, url: str, data_dir: Path, n_results: int, n: int) -> str:
    from radtriage.config import load_settings
    from radtriage.db import open_database
    from radtriage.governance import StateBook
    from radtriage.monitor.metrics import MonitorMetrics
    from radtriage.monitor.watch import SLOW_S, Monitor
    from radtriage.monitor.worker import MonitorWorker
    from radtriage.pipelines import load_pipelines

    db = open_database(url)
    t0 = time.perf_counter()
    fill(db, n_results)
    print(f"{backend}: {n_results} results filled in {time.perf_counter() - t0:.0f} s", flush=True)
    settings = load_settings(config_file=data_dir / "absent.yaml", data_dir=data_dir, database_url=url)
    specs = load_pipelines(REPO / "pipelines")
    book = StateBook(db, specs, REPO / "models", "development")
    monitor = Monitor(db, settings, specs, book, MonitorMetrics())
    worker = MonitorWorker(db, monitor)  # not started: its hook is timed, the evaluation called here
    t0 = time.perf_counter()
    monitor.evaluate("stroke_ich")
    first_ms = (time.perf_counter() - t0) * 1000
    evals, hooks = [], []
    for k in range(n):
        record_one(db, k, positive=k % 12 == 0)
        t0 = time.perf_counter()
        worker.recorded(None, "stroke_ich")
        hooks.append((time.perf_counter() - t0) * 1e6)
        t0 = time.perf_counter()
        verdict = monitor.evaluate("stroke_ich")
        evals.append((time.perf_counter() - t0) * 1000)
    assert verdict is not None and not verdict.hard, verdict
    slow = []  # the evaluation that also measures the slow parts (every SLOW_S): refusals, verdicts, input mix
    for k in range(20):
        record_one(db, n + k, positive=False)
        monitor.watched["stroke_ich"].slow_at = -SLOW_S
        t0 = time.perf_counter()
        monitor.evaluate("stroke_ich")
        slow.append((time.perf_counter() - t0) * 1000)
    db.dispose()
    return (f"RESULT monitor_ms_p95={pct(evals, 95):.2f} ({backend}) monitor_ms_p50={pct(evals, 50):.2f} "
            f"monitor_ms_max={max(evals):.2f} slow_refresh_ms_p50={pct(slow, 50):.2f} hook_us_p95={pct(hooks, 95):.1f} "
            f"first_window_ms={first_ms:.1f} results={n_results} evaluations={n}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--results", type=int, default=100_000)
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument("--backend", choices=("sqlite", "postgresql", "both"), default="both")
    ap.add_argument("--pg-url", default="postgresql://postgres@127.0.0.1:5432/test",
                    help="a PostgreSQL server's database to create the benchmark's database from")
    args = ap.parse_args(argv)
    lines = []
    with tempfile.TemporaryDirectory(prefix="rt-bm-") as tmp:
        work = Path(tmp)
        if args.backend in ("sqlite", "both"):
            lines.append(run("sqlite", f"sqlite:///{work / 'bench.db'}", work, args.results, args.n))
        if args.backend in ("postgresql", "both"):
            import psycopg

            name = f"rt_bench_{uuid.uuid4().hex[:10]}"
            admin = args.pg_url.replace("postgresql+psycopg://", "postgresql://")
            with psycopg.connect(admin, autocommit=True) as conn:
                conn.execute(f'CREATE DATABASE "{name}"')
            try:
                url = admin.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://") + f"/{name}"
                lines.append(run("postgresql", url, work, args.results, args.n))
            finally:
                with psycopg.connect(admin, autocommit=True) as conn:
                    conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,))
                    conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
    for line in lines:
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
