#!/usr/bin/env python3
"""Benchmark scan-to-notification: the last instance acknowledged by the listener -> the webhook receiving the alert.

What it measures
----------------
``--n`` (default 20) synthetic ICH-positive CT heads (``radtriage synth
ct-head``: localizer, ~32-slice soft-tissue series and its bone twin, 512x512)
are C-STOREd one after another by dcmtk's ``storescu`` (TCP_NODELAY) to a real
``radtriage serve`` process started by this script in a temporary data
directory, with an alerting configuration that pages one member by webhook.
A reference webhook receiver (`radtriage.alerts.receiver`) in this process
checks each call's signature. For every study the time from ``storescu``
returning (the SCP has acknowledged the last instance and released the
association) to the receiver taking the alert is measured; the next study is
sent once the alert has arrived. A warm-up study is sent first and not counted.

The stage breakdown is read back from the service's database: assembly wait
(last instance -> series ready), queue (ready -> result recorded, less the
pipeline's own times), load, inference (the pipeline's timings), record (result
recorded -> alert decided and written to the outbox) and delivery (outbox ->
webhook received).

Inference runs on Ray Serve unless ``--in-process`` (the same pipelines in the
service process; ``RADTRIAGE_INFERENCE__USE_RAY=false``). The service must have
the alert service wired in and read its configuration from
``RADTRIAGE_ALERTING_FILE``. The last line is
``RESULT p50_s=<n> p95_s=<n>``.

    python scripts/bench_alert.py [--n 20] [--in-process] [--studies DIR] [--keep]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
STAGES = ("assembly", "queue", "load", "inference", "record", "delivery")


def studies_in(root: Path, n: int, seed: int, matrix: int) -> list[Path]:
    """``n`` ICH-positive CT heads under ``root``, synthesized once (a second run reuses them)."""
    from radtriage.synth import synthesize

    have = sorted(p for p in root.glob("ct-head-*") if (p / "truth.json").exists())
    if len(have) >= n:
        return have[:n]
    print(f"synthesizing {n} ICH-positive CT heads under {root} ...", flush=True)
    return synthesize("ct-head", n, seed, root, {"positive": True, "matrix": matrix})


def study_uid(folder: Path) -> str:
    import pydicom

    return str(pydicom.dcmread(next(folder.glob("*.dcm")), stop_before_pixels=True).StudyInstanceUID)


def alerting_yaml(path: Path, hook_url: str, base_url: str) -> None:
    import yaml

    config = {
        "links": {"base_url": base_url},
        "delivery": {"poll_s": 0.2},
        "channels": {"webhook": {"secret_env": "RADTRIAGE_ALERT_WEBHOOK_SECRET", "timeout_s": 5}},
        "teams": {"bench": {"members": {"oncall": {"name": "Bench on-call", "contacts": {"webhook": hook_url}}}}},
        "policies": {"stroke": {"findings": ["ich", "lvo"], "levels": [
            {"notify": [{"member": "oncall"}], "channels": ["webhook"], "ack_timeout_s": 3600}]}},
    }
    path.write_text(yaml.safe_dump(config))


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pipelines_without_monitor(folder: Path) -> Path:
    """The shipped pipelines with their model monitor off: the benchmark sends only positive heads, which the
    monitor (rightly) takes for a surge and would demote the ICH pipeline after 40 of them."""
    import yaml

    folder.mkdir(parents=True, exist_ok=True)
    for path in sorted((REPO / "pipelines").glob("*.yaml")):
        spec = yaml.safe_load(path.read_text(encoding="utf-8"))
        spec["monitor"] = {"enabled": False}
        (folder / path.name).write_text(yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")
    return folder


def start_service(work: Path, dicom_port: int, http_port: int, env_extra: dict[str, str]) -> subprocess.Popen:
    env = dict(os.environ, RADTRIAGE_CONFIG_FILE=str(REPO / "configs" / "radtriage.yaml"),
               RADTRIAGE_DATA_DIR=str(work / "data"), RADTRIAGE_DICOM_HOST="127.0.0.1",
               RADTRIAGE_DICOM_PORT=str(dicom_port), RADTRIAGE_HTTP_PORT=str(http_port),
               RADTRIAGE_MIN_FREE_BYTES="0", RADTRIAGE_INFERENCE__ENABLED="true",
               RADTRIAGE_INFERENCE__PIPELINES_DIR=str(pipelines_without_monitor(work / "pipelines")),
               RADTRIAGE_INFERENCE__MODELS_DIR=str(REPO / "models"), ORT_DISABLE_TELEMETRY="1", **env_extra)
    log = open(work / "serve.log", "ab")
    return subprocess.Popen([sys.executable, "-m", "radtriage.cli", "serve"], env=env, stdout=log, stderr=log,
                            cwd=work)


def wait_ready(url: str, proc: subprocess.Popen, timeout: float = 600) -> float:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if proc.poll() is not None:
            raise RuntimeError(f"radtriage serve exited with {proc.returncode} while starting (see serve.log)")
        try:
            with urllib.request.urlopen(url + "/readyz", timeout=2) as r:
                if r.status == 200:
                    return time.monotonic() - t0
        except OSError:
            pass
        time.sleep(0.25)
    raise TimeoutError("radtriage serve not ready")


def send(port: int, folder: Path) -> float:
    """C-STORE a study; the wall-clock time at which the SCP had acknowledged its last instance."""
    r = subprocess.run(["storescu", "-aet", "CT_BENCH", "-aec", "RADTRIAGE", "127.0.0.1", str(port),
                        *map(str, sorted(folder.glob("*.dcm")))], capture_output=True, text=True,
                       env=dict(os.environ, TCP_NODELAY="1"))
    if r.returncode != 0:
        raise RuntimeError(f"storescu failed: {r.stderr[-1000:]}")
    return time.time()


MISSED = "missed"


def called_negative(db_url: str, uid: str) -> bool:
    """Whether the ICH pipeline's result for the study is recorded as negative (the model missed it)."""
    from radtriage.db import ledger, open_database

    db = open_database(db_url, migrate=False)
    try:
        return any(r["pipeline_id"] == "stroke_ich" and not r["positive"] for r in ledger.result_rows(db, study_uid=uid))
    finally:
        db.dispose()


def alert_for(receiver: Any, uid: str, timeout: float, db_url: str) -> Any:
    """The receiver's alert for the study; `MISSED` when the model called it negative; None on timeout."""
    end = time.monotonic() + timeout
    next_check = time.monotonic() + 0.5
    while time.monotonic() < end:
        for r in list(receiver.taken.values()):
            if r.event == "alert.page" and r.payload["study_url"].endswith("/" + uid):
                return r
        if time.monotonic() > next_check:
            if called_negative(db_url, uid):
                return MISSED
            next_check = time.monotonic() + 0.5
        time.sleep(0.01)
    return None


def _ts(value: Any) -> float:
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return value.timestamp()


def stages(db_url: str, uid: str, received_at: float) -> dict[str, float]:
    """Seconds spent in each stage for one study, from the service's database."""
    from radtriage.db import ledger, open_database
    from radtriage.db import alerts as alerts_db

    db = open_database(db_url, migrate=False)
    try:
        [res] = [r for r in ledger.result_rows(db, study_uid=uid) if r["pipeline_id"] == "stroke_ich"]
        job = next(j for j in ledger.job_rows(db) if j["id"] == res["job_id"])
        alert = alerts_db.list_alerts(db, study_uid=uid, states=("open", "acknowledged", "resolved"))[-1]
    finally:
        db.dispose()
    times = job["case"]["stage_times"]
    t = res["result"]["timings_ms"]
    own = (t.get("load", 0) + t.get("inference", 0) + t.get("postprocess", 0)) / 1000
    ready, recorded, decided = _ts(times["assembled"]), _ts(res["created_at"]), _ts(alert["created_at"])
    return {"assembly": ready - _ts(times["last_received"]), "queue": recorded - ready - own,
            "load": t.get("load", 0) / 1000, "inference": (t.get("inference", 0) + t.get("postprocess", 0)) / 1000,
            "record": decided - recorded, "delivery": received_at - decided}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=20)
    p.add_argument("--seed", type=int, default=31)
    p.add_argument("--matrix", type=int, default=512)
    p.add_argument("--in-process", action="store_true", help="inference in the service process instead of Ray Serve")
    p.add_argument("--studies", type=Path, help="where the synthetic studies are kept between runs")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for one alert")
    p.add_argument("--keep", action="store_true", help="keep the temporary data directory and serve.log")
    args = p.parse_args(argv)
    if shutil.which("storescu") is None:
        print("dcmtk's storescu is needed (apt-get install dcmtk)", file=sys.stderr)
        return 2
    from radtriage.alerts.receiver import WebhookReceiver

    work = Path(tempfile.mkdtemp(prefix="rt-ba-", dir="/tmp"))  # short: Ray's sockets live under data/ray
    # spares: a study the model calls negative (a false negative) rightly pages nobody and is not timed
    spare = max(3, args.n // 4)
    folders = studies_in(args.studies or work / "studies", args.n + 1 + spare, args.seed, args.matrix)
    missed = 0
    secret = secrets.token_urlsafe(32)
    dicom_port, http_port = free_port(), free_port()
    runner = "in-process" if args.in_process else "Ray Serve"
    rows: list[tuple[float, dict[str, float]]] = []
    with WebhookReceiver(secret.encode(), max_age_s=60) as receiver:
        alerting_yaml(work / "alerting.yaml", receiver.url, f"http://127.0.0.1:{http_port}")
        proc = start_service(work, dicom_port, http_port, {
            "RADTRIAGE_ALERTING_FILE": str(work / "alerting.yaml"), "RADTRIAGE_ALERT_WEBHOOK_SECRET": secret,
            "RADTRIAGE_INFERENCE__USE_RAY": "false" if args.in_process else "true"})
        try:
            print(f"radtriage serve ({runner}) ready in {wait_ready(f'http://127.0.0.1:{http_port}', proc):.1f} s "
                  "(not timed)", flush=True)
            db_url = f"sqlite:///{work / 'data' / 'radtriage.db'}"
            for i, folder in enumerate(folders):
                uid = study_uid(folder)
                acked = send(dicom_port, folder)
                got = alert_for(receiver, uid, args.timeout, db_url)
                if got is MISSED:
                    missed += 1
                    print(f"study {i:2d}: the model called it negative (a false negative): no alert, not timed")
                    continue
                if got is None:
                    print(f"no alert for study {i} within {args.timeout:.0f} s: is the alert service wired into "
                          f"`radtriage serve` (RADTRIAGE_ALERTING_FILE)? See {work / 'serve.log'}", file=sys.stderr)
                    args.keep = True
                    return 1
                if i == 0:
                    continue  # the warm-up
                rows.append((got.at - acked, stages(db_url, uid, got.at)))
                print(f"study {i:2d}: {got.at - acked:6.2f} s  " + "  ".join(
                    f"{k} {v:.2f}" for k, v in rows[-1][1].items()), flush=True)
                if len(rows) == args.n:
                    break
        finally:
            proc.terminate()
            proc.wait(60)
            if not args.keep:
                shutil.rmtree(work, ignore_errors=True)
            else:
                print(f"kept {work}")
        if receiver.refused or receiver.duplicates:
            print(f"receiver refused {len(receiver.refused)} calls ({receiver.refused[:3]}), "
                  f"{receiver.duplicates} duplicates", file=sys.stderr)
    total = [r[0] for r in rows]
    print(f"\n{len(rows)} ICH-positive CT heads alerted, inference {runner} ({missed} more called negative by "
          "the model: no alert, not timed); seconds, p50 / p95 / max:")
    for name in STAGES:
        v = [r[1][name] for r in rows]
        print(f"  {name:10s} {np.percentile(v, 50):6.2f} {np.percentile(v, 95):6.2f} {max(v):6.2f}")
    print(f"  {'total':10s} {np.percentile(total, 50):6.2f} {np.percentile(total, 95):6.2f} {max(total):6.2f}"
          "  (SCP ack of the last instance -> webhook received)")
    print("  (stages run from the ICH series' last instance: the study's later series, e.g. the bone twin, "
          "were still arriving, so they add up to more than the total)")
    print(f"RESULT p50_s={np.percentile(total, 50):.3f} p95_s={np.percentile(total, 95):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
