"""`radtriage serve` with several DICOM listener processes on one port (SO_REUSEPORT).

The same series sent by four associations at once is stored once (duplicates decided by the
database across processes); new associations land on more than one listener; the per-address
connection limit holds across processes; /metrics sums every listener's counts; a listener
that dies is started again; and a killed service leaves no listener holding the port.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import psutil
import pytest

from radtriage.db import instances, open_database
from tests.helpers import free_port, make_ct_series, serve_process, stop_process, storescu, wait_port

pytestmark = [pytest.mark.slow, pytest.mark.dcmtk]

PROCESSES = 3


def listener_pids(server: subprocess.Popen, want: int, timeout: float = 60) -> list[int]:
    """The pids of the service's listener processes (its spawned children that run `listen`)."""
    end = time.monotonic() + timeout
    pids: list[int] = []
    while time.monotonic() < end:
        pids = []
        for child in psutil.Process(server.pid).children():
            try:
                if "multiprocessing" in " ".join(child.cmdline()) and "resource_tracker" not in " ".join(child.cmdline()):
                    pids.append(child.pid)
            except psutil.NoSuchProcess:
                continue
        if len(pids) >= want:
            return sorted(pids)
        time.sleep(0.2)
    raise AssertionError(f"{len(pids)} listener processes, expected {want}")


def start(tmp_path: Path, **env: str) -> tuple[subprocess.Popen, int, int, Path]:
    data_dir = tmp_path / "data"
    data_dir.mkdir(exist_ok=True)
    dicom_port, http_port = free_port(), free_port()
    server = serve_process(data_dir, dicom_port, http_port, RADTRIAGE_DICOM_PROCESSES=str(PROCESSES), **env)
    wait_port(dicom_port, timeout=60, proc=server)
    wait_port(http_port, timeout=60, proc=server)
    listener_pids(server, PROCESSES - 1)  # the API answers once every listener is bound
    return server, dicom_port, http_port, data_dir


def log_text(tmp_path: Path) -> str:
    return "".join(p.read_text(errors="replace") for p in sorted(tmp_path.glob("serve-*.log")))


def metric(text: str, name: str, labels: str) -> float:
    found = re.search(rf"^{name}\{{{labels}\}} (\S+)$", text, re.M)
    assert found, f"{name}{{{labels}}} not in /metrics"
    return float(found.group(1))


def test_listeners_share_the_port_store_each_instance_once_and_sum_metrics(tmp_path: Path) -> None:
    files = make_ct_series(tmp_path / "series", 24)
    server, dicom_port, http_port, data_dir = start(tmp_path)
    try:
        with ThreadPoolExecutor(4) as pool:  # the same 24 instances by four associations at once
            runs = list(pool.map(lambda _: storescu(dicom_port, files, "SCU4"), range(4)))
        assert all(r.returncode == 0 for r in runs), [r.stderr[-500:] for r in runs]
        for f in files[:12]:  # twelve more associations, one instance each
            assert storescu(dicom_port, [f], "SCU1").returncode == 0

        db = open_database(f"sqlite:///{(data_dir / 'radtriage.db').resolve()}", migrate=False)
        rows = instances.instance_rows(db)
        assert len(rows) == 24 and len({r["sop_instance_uid"] for r in rows}) == 24
        assert len(list((data_dir / "spool").rglob("*.dcm"))) == 24  # one file each, whichever process stored it

        used = set(re.findall(r"association accepted: .* listener=(\d+)", log_text(tmp_path)))
        assert len(used) > 1, f"every association went to listener {used}"

        text = httpx.get(f"http://127.0.0.1:{http_port}/metrics", timeout=10).text
        stored = metric(text, "radtriage_instances_received_total", 'outcome="stored",source="dimse"')
        duplicate = metric(text, "radtriage_instances_received_total", 'outcome="duplicate",source="dimse"')
        assert (stored, duplicate) == (24, 4 * 24 + 12 - 24)
        accepted = metric(text, "radtriage_associations_total", 'outcome="accepted"')
        assert accepted == 16
    finally:
        stop_process(server)


def test_the_per_address_limit_holds_across_listener_processes(tmp_path: Path) -> None:
    server, dicom_port, _, _ = start(tmp_path, RADTRIAGE_MAX_CONNECTIONS_PER_ADDRESS="2",
                                     RADTRIAGE_PRE_ASSOCIATION_TIMEOUT_S="30")
    socks = []
    try:
        for _ in range(8):  # silent connections: each stays pending until the timeout
            socks.append(socket.create_connection(("127.0.0.1", dicom_port), timeout=5))
            time.sleep(0.05)
        time.sleep(1.5)
        closed = 0
        for s in socks:
            s.settimeout(0.5)
            try:
                closed += s.recv(1) == b""  # closed by the listener
            except ConnectionResetError:
                closed += 1
            except TimeoutError:
                pass  # still open, pending
        # each listener alone would keep 2; together they keep 2 in all
        assert closed == 6, f"{8 - closed} connections kept open across {PROCESSES} listeners"
    finally:
        for s in socks:
            s.close()
        stop_process(server)


def test_a_dead_listener_is_started_again_and_a_killed_service_frees_the_port(tmp_path: Path) -> None:
    files = make_ct_series(tmp_path / "series", 4)
    server, dicom_port, _, _ = start(tmp_path)
    try:
        before = listener_pids(server, PROCESSES - 1)
        os.kill(before[0], signal.SIGKILL)
        end = time.monotonic() + 60
        while time.monotonic() < end:
            now = listener_pids(server, PROCESSES - 1)
            if before[0] not in now and len(now) == PROCESSES - 1:
                break
            time.sleep(0.3)
        else:
            raise AssertionError("the killed listener was not started again")
        time.sleep(1.0)
        for f in files:
            assert storescu(dicom_port, [f], "SCU1").returncode == 0

        children = listener_pids(server, PROCESSES - 1)
        server.kill()  # SIGKILL: the service cannot stop its listeners itself
        server.wait(10)
        assert psutil.wait_procs([psutil.Process(p) for p in children if psutil.pid_exists(p)], timeout=15)[1] == []
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", dicom_port), timeout=2).close()
    finally:
        if server.poll() is None:
            stop_process(server)
