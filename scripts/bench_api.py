#!/usr/bin/env python3
"""Benchmark the worklist API: the first worklist page under 50 concurrent readers.

What it measures
----------------
Latency (p50, p99) and requests per second of ``GET /api/v1/worklist?limit=50``
served by the real radtriage HTTP API (``create_app`` under uvicorn, in its
own process), on SQLite and then on PostgreSQL.

* Data: ``--studies`` (default 10,000) synthetic studies, each with a series,
  a job, a result (5 % still pending AI) and its worklist row, written by
  `radtriage.db.seed.seed` into a fresh database: SQLite in a temporary
  folder, and a scratch PostgreSQL database (``radtriage_bench``) on
  127.0.0.1:5432 that is dropped afterwards. Seeding is not timed.
* Server: ``uvicorn`` serving ``create_app(build_services(settings))`` with
  ``--workers`` processes (default 2 with wrk, 1 with httpx, which needs a
  core of its own on a 2-core machine), uvloop and httptools, access log off,
  inference off. Its start-up is not timed.
* Client (``--client``): ``wrk`` (C, one thread, ``--clients`` keep-alive
  connections; Debian package ``wrk``) when installed, else one Python process
  of ``--clients`` asyncio tasks, each with its own keep-alive
  ``httpx.AsyncClient`` (one connection). Either way each connection is a
  closed loop (send, read the whole body, send again) with a radiologist's
  bearer token. (With httpx the client itself takes ~1 ms of CPU per request
  and is the limit on 2 cores; wrk takes ~0.05 ms.)
  A short warm-up (``--warmup`` s) is not counted; then every request that
  completes within ``--seconds`` (default 30) counts. Latency is from send to
  the last byte of the body, as the client sees it, so on one machine it
  includes the time the client's own event loop takes to get round to it.
* Checks: before timing, the first page must list ``limit`` items in
  worklist order (priority rank, then oldest first) and ``total`` must equal
  the number of studies; every timed response must be 200 with the same
  length as the first one (the data does not change during the run).
* CPU: the share of one core used by the client and by the server processes
  while timed, to show which side is the bottleneck.

The last line printed is machine-readable::

    RESULT sqlite_p99_ms=<n> postgres_p99_ms=<n> sqlite_rps=<n> postgres_rps=<n>

Usage: ``flock /tmp/radtriage-cpu.lock .venv/bin/python scripts/bench_api.py
[--studies 10000] [--clients 50] [--seconds 30] [--workers 1]``.
Needs PostgreSQL on 127.0.0.1:5432 (trust auth) for the PostgreSQL half
(``--databases sqlite`` skips it) and psutil.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SCRIPTS = Path(__file__).resolve().parent
PG_ADMIN = "host=127.0.0.1 port=5432 user=postgres dbname=postgres"
PG_DB = "radtriage_bench"
ORDER = {"STAT": 0, "URGENT": 1, "PENDING_AI": 2, "ROUTINE": 3}
ENV_DATA, ENV_URL = "RADTRIAGE_BENCH_DATA_DIR", "RADTRIAGE_BENCH_DATABASE_URL"


def _settings(data_dir: Path, url: str) -> Any:
    from radtriage.config import load_settings

    return load_settings(config_file=data_dir / "absent.yaml", data_dir=data_dir, database_url=url,
                         inference={"enabled": False})


def app_factory() -> Any:
    """The server side: what uvicorn imports in each worker (``--factory bench_api:app_factory``)."""
    from radtriage.api import create_app
    from radtriage.service import build_services

    return create_app(build_services(_settings(Path(os.environ[ENV_DATA]), os.environ[ENV_URL])))


# --- set-up -------------------------------------------------------------------------


def prepare(data_dir: Path, url: str, studies: int) -> str:
    """Seed the database; returns a radiologist's bearer token."""
    from radtriage.db import accounts
    from radtriage.triage import seed
    from radtriage.service import build_services

    services = build_services(_settings(data_dir, url))
    try:
        t0 = time.perf_counter()
        seed.seed(services.db, studies, seed=1)
        accounts.add_user(services.db, "bench.reader", "radiologist", "bench reader password")
        token = accounts.issue_token(services.db, "bench.reader", name="bench")
        print(f"  seeded {studies} studies in {time.perf_counter() - t0:.1f} s", flush=True)
        return token
    finally:
        services.close()


def _pg_admin(sql: str) -> None:
    import psycopg

    with psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=5) as conn:
        if sql.startswith("DROP"):
            conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (PG_DB,))
        conn.execute(sql)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """uvicorn serving the app in a child process."""

    def __init__(self, data_dir: Path, url: str, workers: int) -> None:
        self.port = _free_port()
        env = {**os.environ, ENV_DATA: str(data_dir), ENV_URL: url, "PYTHONUNBUFFERED": "1"}
        cmd = [sys.executable, "-m", "uvicorn", "--factory", "bench_api:app_factory", "--app-dir", str(SCRIPTS),
               "--host", "127.0.0.1", "--port", str(self.port), "--workers", str(workers),
               "--loop", "uvloop", "--http", "httptools", "--no-access-log", "--log-level", "warning"]
        self.log = open(data_dir / "server.log", "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(cmd, env=env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        self.base = f"http://127.0.0.1:{self.port}"

    def wait_ready(self, timeout_s: float = 60.0) -> None:
        import httpx

        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}; see {self.log.name}")
            try:
                if httpx.get(self.base + "/healthz", timeout=1.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"server not ready within {timeout_s:.0f} s; see {self.log.name}")

    def processes(self) -> list[Any]:
        import psutil

        root = psutil.Process(self.proc.pid)
        return [root, *root.children(recursive=True)]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def _cpu_s(procs: list[Any]) -> float:
    total = 0.0
    for p in procs:
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except Exception:  # noqa: BLE001 - a process gone: nothing to add
            pass
    return total


# --- the load -------------------------------------------------------------------------


def check_first_page(base: str, token: str, studies: int, limit: int) -> int:
    """The first page is in worklist order and counts every study; returns its length in bytes."""
    import httpx

    r = httpx.get(f"{base}/api/v1/worklist", params={"limit": limit},
                  headers={"Authorization": f"Bearer {token}"}, timeout=30.0)
    assert r.status_code == 200, (r.status_code, r.text[:300])
    page = r.json()
    keys = [(ORDER[i["priority"]], i["received_at"]) for i in page["items"]]
    assert page["total"] == studies, f"total {page['total']} != {studies}"
    assert len(keys) == min(limit, studies) and keys == sorted(keys), "first page not in worklist order"
    unauthorised = httpx.get(f"{base}/api/v1/worklist", params={"limit": limit}, timeout=30.0)
    assert unauthorised.status_code == 401, unauthorised.status_code
    return len(r.content)


@dataclass
class Run:
    latencies_s: list[float]
    seconds: float
    errors: int
    client_cpu: float  # share of one core
    server_cpu: float


async def _load(base: str, token: str, clients: int, limit: int, expect_len: int, warmup_s: float,
                seconds: float, server_procs: list[Any]) -> Run:
    import httpx

    url = f"{base}/api/v1/worklist?limit={limit}"
    headers = {"Authorization": f"Bearer {token}"}
    latencies: list[float] = []
    errors = 0
    start = time.perf_counter() + warmup_s
    stop = start + seconds

    async def client() -> None:
        nonlocal errors
        async with httpx.AsyncClient(headers=headers, timeout=30.0,
                                     limits=httpx.Limits(max_connections=1, max_keepalive_connections=1)) as http:
            request = http.build_request("GET", url)  # the same request every time: built once
            while (t0 := time.perf_counter()) < stop:
                r = await http.send(request)
                t1 = time.perf_counter()
                if start <= t0 and t1 <= stop:
                    if r.status_code == 200 and len(r.content) == expect_len:
                        latencies.append(t1 - t0)
                    else:
                        errors += 1

    tasks = [asyncio.create_task(client()) for _ in range(clients)]
    await asyncio.sleep(max(0.0, start - time.perf_counter()))
    cpu0, srv0, wall0 = time.process_time(), _cpu_s(server_procs), time.perf_counter()
    await asyncio.sleep(max(0.0, stop - time.perf_counter()))
    cpu1, srv1, wall1 = time.process_time(), _cpu_s(server_procs), time.perf_counter()
    await asyncio.gather(*tasks)
    wall = wall1 - wall0
    return Run(latencies, seconds, errors, (cpu1 - cpu0) / wall, (srv1 - srv0) / wall)


_WRK_TIME = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}


def _wrk_seconds(text: str) -> float:
    import re

    m = re.fullmatch(r"([0-9.]+)(us|ms|s|m)", text)
    if not m:
        raise ValueError(f"unexpected wrk time {text!r}")
    return float(m.group(1)) * _WRK_TIME[m.group(2)]


def _load_wrk(base: str, token: str, clients: int, limit: int, warmup_s: float, seconds: float,
              server_procs: list[Any]) -> dict[str, float]:
    """The same closed loop with wrk (C, one thread): far less client CPU per request than Python's httpx."""
    import re
    import resource
    import subprocess

    url = f"{base}/api/v1/worklist?limit={limit}"
    cmd = ["wrk", "-t1", f"-c{clients}", "--latency", "-H", f"Authorization: Bearer {token}"]
    if warmup_s > 0:
        subprocess.run([*cmd, f"-d{max(1, int(warmup_s))}s", url], capture_output=True, check=True)
    ru0, srv0, wall0 = resource.getrusage(resource.RUSAGE_CHILDREN), _cpu_s(server_procs), time.perf_counter()
    out = subprocess.run([*cmd, f"-d{int(seconds)}s", url], capture_output=True, text=True, check=True).stdout
    ru1, srv1, wall1 = resource.getrusage(resource.RUSAGE_CHILDREN), _cpu_s(server_procs), time.perf_counter()
    pct = dict(re.findall(r"^\s+(50|99)%\s+(\S+)$", out, re.MULTILINE))
    rps = float(re.search(r"Requests/sec:\s+([0-9.]+)", out).group(1))
    requests = int(re.search(r"(\d+) requests in", out).group(1))
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errs = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    errors = (int(bad.group(1)) if bad else 0) + (sum(map(int, errs.groups())) if errs else 0)
    wall = wall1 - wall0
    max_ms = _wrk_seconds(re.search(r"Latency\s+\S+\s+\S+\s+(\S+)", out).group(1)) * 1e3
    client_cpu = (ru1.ru_utime + ru1.ru_stime - ru0.ru_utime - ru0.ru_stime) / wall
    return {"p50_ms": _wrk_seconds(pct["50"]) * 1e3, "p99_ms": _wrk_seconds(pct["99"]) * 1e3, "max_ms": max_ms,
            "mean_ms": float("nan"), "rps": rps, "requests": requests, "errors": errors,
            "client_cpu": client_cpu, "server_cpu": (srv1 - srv0) / wall}


def bench_one(name: str, url: str, data_dir: Path, args: argparse.Namespace) -> dict[str, float]:
    import uvloop

    print(f"{name}:", flush=True)
    token = prepare(data_dir, url, args.studies)
    server = Server(data_dir, url, args.workers)
    try:
        server.wait_ready()
        expect_len = check_first_page(server.base, token, args.studies, args.limit)
        print(f"  first page checked: {args.limit} items in worklist order, total {args.studies}, "
              f"{expect_len} bytes", flush=True)
        if args.client == "wrk":
            out = _load_wrk(server.base, token, args.clients, args.limit, args.warmup, args.seconds,
                            server.processes())
            print("  wrk: " + json.dumps({k: round(v, 2) for k, v in out.items()}), flush=True)
            return out
        run = uvloop.run(_load(server.base, token, args.clients, args.limit, expect_len, args.warmup,
                               args.seconds, server.processes()))
    finally:
        server.stop()
    lat = sorted(run.latencies_s)
    if not lat:
        raise RuntimeError(f"{name}: no successful requests ({run.errors} errors)")
    q = statistics.quantiles(lat, n=100, method="inclusive")
    out = {"p50_ms": q[49] * 1e3, "p99_ms": q[98] * 1e3, "max_ms": lat[-1] * 1e3, "mean_ms": statistics.fmean(lat) * 1e3,
           "rps": len(lat) / run.seconds, "requests": len(lat), "errors": run.errors,
           "client_cpu": run.client_cpu, "server_cpu": run.server_cpu}
    print("  " + json.dumps({k: round(v, 2) for k, v in out.items()}), flush=True)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--studies", type=int, default=10_000)
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--warmup", type=float, default=3.0)
    ap.add_argument("--workers", type=int, default=None,
                    help="uvicorn worker processes (default: 2 with wrk, which leaves the cores to the server; "
                         "1 with httpx, which needs a core of its own)")
    ap.add_argument("--limit", type=int, default=50, help="page size requested")
    ap.add_argument("--databases", default="sqlite,postgres", help="comma-separated: sqlite, postgres")
    ap.add_argument("--client", choices=["auto", "wrk", "httpx"], default="auto",
                    help="load generator: wrk (C; Debian package wrk) or Python httpx; auto: wrk when installed")
    args = ap.parse_args()
    if args.client == "auto":
        import shutil

        args.client = "wrk" if shutil.which("wrk") else "httpx"
    if args.workers is None:
        args.workers = 2 if args.client == "wrk" else 1
    os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")

    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="radtriage-bench-api-") as tmp:
        for name in args.databases.split(","):
            data_dir = Path(tmp) / name
            data_dir.mkdir()
            if name == "sqlite":
                results[name] = bench_one(name, f"sqlite:///{data_dir / 'radtriage.db'}", data_dir, args)
            elif name == "postgres":
                _pg_admin(f'DROP DATABASE IF EXISTS "{PG_DB}"')
                _pg_admin(f'CREATE DATABASE "{PG_DB}"')
                try:
                    results[name] = bench_one(name, f"postgresql+psycopg://postgres@127.0.0.1:5432/{PG_DB}",
                                              data_dir, args)
                finally:
                    _pg_admin(f'DROP DATABASE IF EXISTS "{PG_DB}"')
            else:
                ap.error(f"unknown database {name!r}")

    print(f"\nGET /api/v1/worklist?limit={args.limit}: {args.studies} studies, {args.clients} closed-loop clients, "
          f"{args.seconds:.0f} s, client {args.client}, uvicorn workers={args.workers}, "
          f"{os.cpu_count()} CPU cores shared by client and server")
    print("(CPU: share of one core while timed, and CPU time per request; client = the load generator)")
    head = f"{'database':<10} {'p50 ms':>7} {'p99 ms':>7} {'max ms':>7} {'req/s':>6} {'requests':>8} {'errors':>6} " \
           f"{'client CPU':>10} {'server CPU':>10} {'client ms/req':>13} {'server ms/req':>13}"
    print(head)
    print("-" * len(head))
    for name, r in results.items():
        print(f"{name:<10} {r['p50_ms']:>7.1f} {r['p99_ms']:>7.1f} {r['max_ms']:>7.1f} {r['rps']:>6.0f} "
              f"{r['requests']:>8.0f} {r['errors']:>6.0f} {r['client_cpu']:>10.0%} {r['server_cpu']:>10.0%} "
              f"{r['client_cpu'] / r['rps'] * 1e3:>13.2f} {r['server_cpu'] / r['rps'] * 1e3:>13.2f}")
    load = os.getloadavg()[0]
    if load > os.cpu_count():  # other work on the machine makes every figure worse
        print(f"note: load average {load:.1f} on {os.cpu_count()} cores at the end: other processes shared the CPUs")
    target = all(r["p99_ms"] <= 100 for r in results.values())
    print(f"target p99 <= 100 ms: {'met' if target else 'NOT met'}")
    fields = " ".join(f"{name}_p99_ms={results[name]['p99_ms']:.1f}" for name in ("sqlite", "postgres") if name in results)
    fields += " " + " ".join(f"{name}_rps={results[name]['rps']:.0f}" for name in ("sqlite", "postgres") if name in results)
    print(f"RESULT {fields}")
    return 0 if all(r["errors"] == 0 for r in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
