"""An edge gateway and its hub on one machine: two `radtriage serve` processes with their own data directories
and ports. The hub is away while the edge receives, then comes: every instance arrives once; the hub is
killed mid-forwarding: nothing lost, nothing twice; the series check sends again what the hub lacks; the
site's Issuer of Patient ID is on the hub's copy only, and the hub knows the study's site."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import pydicom
import pytest

from radtriage.db import accounts, open_database
from tests.helpers import free_port, make_ct_series, serve_process, stop_process, storescu, wait_port

ISSUER = "KWC-HOSP"


class Node:
    """One `radtriage serve` (its data directory, ports and process)."""

    def __init__(self, root: Path, name: str, config: dict | None = None, **env: str) -> None:
        self.dir = root / name
        self.dir.mkdir(parents=True)
        self.dicom, self.http, self.env = free_port(), free_port(), env
        (self.dir / "absent.yaml").write_text(json.dumps({"quiet_period_s": 0.3, "stable_age_s": 5, **(config or {})}))
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.proc = serve_process(self.dir, self.dicom, self.http, **self.env)
        wait_port(self.dicom, 60, self.proc)
        wait_port(self.http, 60, self.proc)

    def stop(self, kill: bool = False) -> None:
        if self.proc is not None and self.proc.poll() is None:
            if kill:
                self.proc.send_signal(signal.SIGKILL)
                self.proc.wait(10)
            else:
                stop_process(self.proc)
        self.proc = None

    def query(self, sql: str, *args) -> list[tuple]:
        db = self.dir / "radtriage.db"
        if not db.exists():
            return []
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10) as conn:
            try:
                return conn.execute(sql, args).fetchall()
            except sqlite3.OperationalError:  # not migrated yet
                return []

    def count(self, sql: str, *args) -> int:
        rows = self.query(sql, *args)
        return rows[0][0] if rows else 0


def wait_for(what, done, timeout: float = 90.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if done():
            return
        time.sleep(0.25)
    raise AssertionError(f"not in {timeout} s: {what}")


@pytest.fixture
def pair(tmp_path):
    """(edge, hub, make_edge): the hub with a service token the edge reads from HUB_TOKEN."""
    hub = Node(tmp_path, "hub")
    db = open_database(f"sqlite:///{(hub.dir / 'radtriage.db').resolve()}")
    accounts.add_user(db, "edge-kwc", "service")
    token = accounts.issue_token(db, "edge-kwc")
    db.dispose()
    made: list[Node] = [hub]

    def make_edge(channel: str) -> Node:
        hub_cfg = ({"dicom": {"ae_title": "RADTRIAGE", "host": "127.0.0.1", "port": hub.dicom, "timeout_s": 5}}
                   if channel == "dicom" else {"stow_url": f"http://127.0.0.1:{hub.http}/dicomweb/studies"})
        edge = Node(tmp_path, "edge", {"ae_title": "EDGE_KWC", "forward": {
            "site": "kwc", "issuer": ISSUER, "api_url": f"http://127.0.0.1:{hub.http}", "token_env": "HUB_TOKEN",
            "backoff_s": 0.2, "max_backoff_s": 1.0, "sweep_s": 0.2, **hub_cfg}}, HUB_TOKEN=token)
        made.append(edge)
        return edge

    yield hub, make_edge
    for node in made:
        node.stop()


def _hub_holds(hub: Node) -> int:
    return hub.count("SELECT count(*) FROM instances")


def _spool_files(node: Node) -> list[Path]:
    return [p for p in (node.dir / "spool").rglob("*.dcm") if ".conflicts" not in p.parts]


@pytest.mark.slow
def test_hub_away_then_back_all_300_arrive_once_and_the_check_resends_a_cancelled_one(pair, tmp_path):
    hub, make_edge = pair
    edge = make_edge("dicom")
    edge.start()
    paths = make_ct_series(tmp_path / "in", 300, PatientID="P-300")
    assert "IssuerOfPatientID" not in pydicom.dcmread(paths[0])
    r = storescu(edge.dicom, paths, "CT_SCANNER", "EDGE_KWC")
    assert r.returncode == 0, r.stderr[-2000:]
    wait_for("300 forward rows at the edge",
             lambda: edge.count("SELECT count(*) FROM outbox WHERE kind='forward' AND channel='dicom'") == 300)
    # one row is cancelled before it could leave (an operator, a bug): the series check must find the gap
    victim = None
    while victim is None:
        rows = edge.query("SELECT id, json_extract(payload, '$.sop_instance_uid') FROM outbox "
                          "WHERE kind='forward' AND channel='dicom' AND state='pending' ORDER BY id DESC LIMIT 1")
        with sqlite3.connect(edge.dir / "radtriage.db", timeout=10) as conn:
            if rows and conn.execute("UPDATE outbox SET state='cancelled' WHERE id=? AND state='pending'",
                                     (rows[0][0],)).rowcount == 1:
                victim = rows[0][1]
    hub.start()
    wait_for("all 300 at the hub", lambda: _hub_holds(hub) == 300, timeout=150)
    assert hub.count("SELECT count(*) FROM instances WHERE sop_instance_uid=?", victim) == 1
    assert edge.count("SELECT count(*) FROM outbox WHERE kind='forward' AND idempotency_key LIKE ? "
                      "AND state='delivered'", f"forward:{victim}:%:r1") == 1
    assert hub.count("SELECT count(*) FROM instance_replacements") == 0
    assert len(_spool_files(hub)) == 300
    # identity: the hub's copy carries the site's issuer; the edge keeps the bytes as received
    assert hub.query("SELECT patient_id, patient_id_issuer FROM studies") == [("P-300", ISSUER)]
    held = _spool_files(hub)[0]
    assert pydicom.dcmread(held).IssuerOfPatientID == ISSUER
    assert all("IssuerOfPatientID" not in pydicom.dcmread(p, stop_before_pixels=True) for p in _spool_files(edge)[:5])
    # the hub knows the study's site, and its worklist filters by it
    wait_for("the study's site at the hub", lambda: hub.query("SELECT site FROM studies") == [("kwc",)])
    assert edge.count("SELECT count(*) FROM audit_log WHERE action='series_forward_checked'") >= 1
    assert hub.count("SELECT count(*) FROM audit_log WHERE action='series_completeness_checked'") >= 1


@pytest.mark.slow
def test_link_drops_mid_forwarding_nothing_lost_nothing_twice(pair, tmp_path):
    hub, make_edge = pair
    edge = make_edge("stow")
    hub.start()
    edge.start()
    n = 200
    paths = make_ct_series(tmp_path / "in", n, PatientID="P-DROP")
    r = storescu(edge.dicom, paths, "CT_SCANNER", "EDGE_KWC")
    assert r.returncode == 0, r.stderr[-2000:]
    wait_for("forwarding under way", lambda: _hub_holds(hub) >= 20, timeout=60)
    hub.stop(kill=True)  # the link drops mid-request
    between = _hub_holds(hub)
    assert between < n, "forwarding finished before the hub was killed: the test proves nothing"
    hub.start()
    wait_for(f"all {n} at the hub", lambda: _hub_holds(hub) == n, timeout=150)
    assert hub.count("SELECT count(DISTINCT sop_instance_uid) FROM instances") == n
    assert hub.count("SELECT count(*) FROM instance_replacements") == 0
    assert len(_spool_files(hub)) == n
    # every instance row ended delivered (a retried one once more, never twice at the hub)
    wait_for("edge rows finished", lambda: edge.count(
        "SELECT count(*) FROM outbox WHERE kind='forward' AND channel='stow' AND state='delivered'") == n)
    assert hub.query("SELECT DISTINCT patient_id_issuer FROM studies") == [(ISSUER,)]
