#!/usr/bin/env python3
"""Benchmark an edge's AI results to its radtriage hub: from a result queued at the edge to the hub's answer.

What it measures
----------------
A hub (``create_app`` under uvicorn on loopback, SQLite in a temporary data directory) and an edge (its own
data directory) in this process. ``--n`` (default 300) results, each with two findings, are queued at the
edge as the dispatcher's recording hook queues them (`radtriage.forward.results.queue_results`, one
transaction per result), then the edge's forwarding `OutboxWorker` (``threads``, 2) posts them to
``POST /api/v1/forward/results``: the delivery rate over the run. Checks: every row delivered, the hub keeps
exactly ``n`` rows; then every row is sent once more (answers lost) and the hub still keeps ``n``. Then
``--single`` (30) results one at a time, the worker woken as the runtime wakes it after a live result: the
time from each outbox row (``created_at``) to ``delivered_at`` (the hub's answer, after it kept and audited
the result).

The last line printed is machine-readable::

    RESULT forward_result_p95_s=<s> forward_result_p50_s=<s> results_per_s=<r> n=<n>

Usage: ``.venv/bin/python scripts/bench_forward_results.py [--n 300] [--single 30]``.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _row(i: int) -> dict:
    result = {"task": "ich", "model_id": "ich_densenet", "model_version": "1.0.0", "pipeline_version": "1.2.0",
              "positive": i % 2 == 0, "scores": {"ich_probability": 0.9}, "labels": {"subtype": "subdural"},
              "findings": [{"code": "ich", "text": "Intracranial haemorrhage", "probability": 0.9},
                           {"code": "series:ct", "text": "Series used: axial 5 mm", "probability": None}],
              "timings_ms": {"model": 45.0}}
    return {"id": i, "pipeline_id": "stroke_ich", "pipeline_version": "1.2.0", "study_uid": f"1.2.826.0.1.{i}",
            "series_uid": f"1.2.826.0.1.{i}.1", "priority": "STAT", "result": result,
            "state": "live" if i % 4 else "shadow"}


def _delivered(db, kind: str) -> list[tuple]:
    from sqlalchemy import select

    from radtriage.db.clock import aware
    from radtriage.db.tables import outbox

    with db.read() as conn:
        rows = conn.execute(select(outbox.c.created_at, outbox.c.delivered_at, outbox.c.state)
                            .where(outbox.c.kind == kind).order_by(outbox.c.id)).all()
    return [(aware(c), aware(d) if d else None, s) for c, d, s in rows]


def _wait_all(db, kind: str, n: int, timeout: float = 600) -> list[tuple]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = _delivered(db, kind)
        if len(rows) == n and all(s in ("delivered", "failed") for *_, s in rows):
            return rows
        time.sleep(0.1)
    raise SystemExit(f"not all delivered in {timeout:.0f} s")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument("--single", type=int, default=30)
    args = ap.parse_args()
    os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")

    import uvicorn
    from sqlalchemy import func, select, update

    from radtriage.api import create_app
    from radtriage.config import load_settings
    from radtriage.db import accounts
    from radtriage.db.clock import utcnow
    from radtriage.db.tables import edge_results, outbox
    from radtriage.forward import results
    from radtriage.forward.worker import Forwarding
    from radtriage.service import build_services

    tmp = Path(tempfile.mkdtemp(prefix="rt-bench-fwd-"))
    base = dict(config_file=tmp / "absent.yaml", dicom_host="127.0.0.1", dicom_port=0, min_free_bytes=0,
                inference={"enabled": False}, alerting_file=None)
    hub = build_services(load_settings(data_dir=tmp / "hub", **base))
    accounts.add_user(hub.db, "edge-kwc", "service")
    os.environ["BENCH_HUB_TOKEN"] = accounts.issue_token(hub.db, "edge-kwc")
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(hub), host="127.0.0.1", port=port, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    edge = build_services(load_settings(data_dir=tmp / "edge", **base, forward={
        "site": "kwc", "ai": "edge", "stow_url": f"http://127.0.0.1:{port}/dicomweb/studies",
        "token_env": "BENCH_HUB_TOKEN"}))
    forwarding = Forwarding(edge.db, edge.settings)
    try:
        for i in range(1, args.n + 1):
            with edge.db.write() as conn:
                results.queue_results(conn, edge.settings.forward, "hub", [_row(i)], utcnow())
        t0 = time.monotonic()
        forwarding.worker.start()
        rows = _wait_all(edge.db, results.KIND, args.n)
        wall = time.monotonic() - t0
        delivered = sum(s == "delivered" for *_, s in rows)
        with hub.db.read() as conn:
            kept = conn.execute(select(func.count()).select_from(edge_results)).scalar_one()
        with edge.db.write() as conn:  # every answer lost: each row goes again
            conn.execute(update(outbox).where(outbox.c.kind == results.KIND)
                         .values(state="pending", next_attempt_at=utcnow()))
        forwarding.worker.wake()
        _wait_all(edge.db, results.KIND, args.n)
        with hub.db.read() as conn:
            again = conn.execute(select(func.count()).select_from(edge_results)).scalar_one()
        one = []  # one result at a time, the worker woken as the runtime wakes it after a live result
        for i in range(args.n + 1, args.n + 1 + args.single):
            with edge.db.write() as conn:
                results.queue_results(conn, edge.settings.forward, "hub", [_row(i)], utcnow())
            forwarding.worker.wake()
            c, d, _ = _wait_all(edge.db, results.KIND, i)[-1]
            one.append((d - c).total_seconds())
    finally:
        forwarding.stop()
        server.should_exit = True
        edge.close()
        hub.close()
    assert delivered == args.n and kept == args.n and again == args.n, (delivered, kept, again)
    one.sort()
    p50, p95 = statistics.median(one), one[int(0.95 * (len(one) - 1))]
    print(f"{args.n} results queued, then delivered by {edge.settings.forward.threads} threads in {wall:.2f} s "
          f"({args.n / wall:.0f}/s); kept at the hub {kept}, after every row sent again {again}; "
          f"{len(one)} results one at a time, seconds from queued to the hub's answer: min {one[0]:.3f} "
          f"median {p50:.3f} p95 {p95:.3f} max {one[-1]:.3f}; load average {os.getloadavg()[0]:.1f}")
    print(f"RESULT forward_result_p95_s={p95:.2f} forward_result_p50_s={p50:.2f} "
          f"results_per_s={args.n / wall:.1f} n={args.n}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
