"""Crash safety: `radtriage serve` killed with SIGKILL in the middle of an association.

dcmtk's storescu sends a 300-instance CT series to the service running as its
own process; once 100 instances have been acknowledged the service is killed
(-9). After a restart on the same data directory every instance the sender was
told was stored must be on disk, intact, and in the index; nothing partial may
remain; and resending the whole series (the first part as duplicates) must
complete it as one case of 300 instances.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import pydicom
import pytest

from radtriage.db import instances, ledger, open_database, studies
from radtriage.ingest.spool import TMP_SUFFIX
from tests.helpers import free_port, make_ct_series, need_binary, serve_process, storescu, wait_port

pytestmark = [pytest.mark.slow, pytest.mark.dcmtk]

N_INSTANCES = 300
KILL_AFTER = 100
SUCCESS = "Received Store Response (Success)"
SENDING = "I: Sending file: "


def storescu_cmd(exe: str, port: int, files: list[Path]) -> list[str]:
    return [exe, "-v", "-aet", "CRASHSCU", "-aec", "RADTRIAGE", "127.0.0.1", str(port), *map(str, files)]


def run_storescu_and_kill(exe: str, port: int, files: list[Path], server: subprocess.Popen) -> tuple[list[str], int]:
    """Send ``files`` in one association; SIGKILL ``server`` once KILL_AFTER are acknowledged.

    Returns the files storescu reported as successfully stored, and its exit status."""
    scu = subprocess.Popen(
        storescu_cmd(exe, port, files),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,  # dcmtk logs to stderr, one line at a time
        text=True,
        env=dict(os.environ, TCP_NODELAY="1"),
    )
    watchdog = threading.Timer(90, scu.kill)  # never hang the test run
    watchdog.start()
    acknowledged: list[str] = []
    current: str | None = None
    try:
        assert scu.stderr is not None
        for line in scu.stderr:
            line = line.rstrip("\n")
            if line.startswith(SENDING):
                current = line[len(SENDING):].strip()
            elif SUCCESS in line:
                assert current is not None, "a response without a file"
                acknowledged.append(current)
                current = None
                if len(acknowledged) == KILL_AFTER:
                    os.kill(server.pid, signal.SIGKILL)
        rc = scu.wait(timeout=30)
    finally:
        watchdog.cancel()
        if scu.poll() is None:
            scu.kill()
            scu.wait()
    return acknowledged, rc


def server_log(tmp_path: Path) -> str:
    text = "".join(p.read_text(errors="replace") for p in sorted(tmp_path.glob("serve-*.log")))
    return text[-4000:]


def stop(proc: subprocess.Popen | None) -> None:
    if proc is not None and proc.poll() is None:
        proc.kill()
        proc.wait(timeout=10)


def test_sigkill_mid_association_loses_no_acknowledged_instance(tmp_path: Path) -> None:
    exe = need_binary("storescu")
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    files = make_ct_series(tmp_path / "series", N_INSTANCES, PatientName="SECRET^PATIENT", PatientID="PID-SECRET-123")
    uid_of = {str(p): str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID) for p in files}
    series_uid = str(pydicom.dcmread(files[0], stop_before_pixels=True).SeriesInstanceUID)
    assert len(set(uid_of.values())) == N_INSTANCES

    dicom_port, http_port = free_port(), free_port()
    env = dict(RADTRIAGE_STABLE_AGE_S="3", RADTRIAGE_QUIET_PERIOD_S="0.5")
    spool = data_dir / "spool"
    server: subprocess.Popen | None = None
    db = None
    try:
        server = serve_process(data_dir, dicom_port, http_port, **env)
        wait_port(dicom_port, timeout=60, proc=server)

        # 1. send, and kill -9 the service in the middle of the association
        acknowledged, rc = run_storescu_and_kill(exe, dicom_port, files, server)
        assert server.wait(timeout=10) == -signal.SIGKILL, "the service was not killed mid-transfer"
        assert len(acknowledged) >= KILL_AFTER, f"only {len(acknowledged)} acknowledged:\n{server_log(tmp_path)}"
        assert len(acknowledged) < N_INSTANCES, "storescu finished before the kill: nothing was tested"
        assert rc != 0, "storescu should fail when the service dies under it"

        # 2. restart on the same data directory and port
        server = serve_process(data_dir, dicom_port, http_port, **env)
        wait_port(dicom_port, timeout=60, proc=server)
        db = open_database(f"sqlite:///{(data_dir / 'radtriage.db').resolve()}", migrate=False)

        rows = {r["sop_instance_uid"]: r for r in instances.instance_rows(db)}
        missing = [uid_of[f] for f in acknowledged if uid_of[f] not in rows]
        assert not missing, f"{len(missing)} acknowledged instances are not indexed after the crash"
        for f in acknowledged:
            row = rows[uid_of[f]]
            path = Path(row["path"])
            assert path.is_file(), f"indexed file missing: {path}"
            assert path.resolve().is_relative_to(spool.resolve())
            data = path.read_bytes()
            assert hashlib.sha256(data).hexdigest() == row["sha256"], f"{path} is not what was indexed"
            assert row["size_bytes"] == len(data)
            ds = pydicom.dcmread(path)
            assert str(ds.SOPInstanceUID) == uid_of[f]
            assert str(ds.SeriesInstanceUID) == series_uid
            assert len(ds.PixelData) == ds.Rows * ds.Columns * ds.BitsAllocated // 8
        # whatever the index holds is complete on disk too (acknowledged or not)
        for uid, row in rows.items():
            assert Path(row["path"]).is_file(), f"index points at a missing file for {uid}"
        # no partial file survived the restart
        assert list(spool.rglob(f"*{TMP_SUFFIX}")) == []
        # nothing outside the index pretends to be a stored instance
        on_disk = {p.resolve() for p in spool.rglob("*.dcm")}
        indexed = {Path(r["path"]).resolve() for r in rows.values()}
        assert indexed <= on_disk

        # 3. resend everything: the stored ones as duplicates, the rest for the first time
        again = storescu(dicom_port, files, "CRASHSCU", "RADTRIAGE", "-v")
        assert again.returncode == 0, again.stderr[-2000:]
        assert again.stderr.count(SUCCESS) == N_INSTANCES

        rows = {r["sop_instance_uid"]: r for r in instances.instance_rows(db, series_uid)}
        assert set(rows) == set(uid_of.values())

        # 4. the series completes as one case with every instance
        deadline = time.monotonic() + 20
        case = None
        while time.monotonic() < deadline:
            cases = [j["case"] for j in ledger.job_rows(db) if j["case"]["series_uid"] == series_uid]
            full = [c for c in cases if c["instance_count"] == N_INSTANCES]
            if full:
                case = full[-1]
                break
            time.sleep(0.2)
        assert case is not None, f"no complete case for the series; jobs: {cases}\n{server_log(tmp_path)}"
        states = [
            s["state"]
            for st in studies.list_studies(db)
            for s in st["series"]
            if s["series_uid"] == series_uid
        ]
        assert states == ["ready"]
        assert list(spool.rglob(f"*{TMP_SUFFIX}")) == []
    finally:
        if db is not None:
            db.dispose()
        stop(server)
