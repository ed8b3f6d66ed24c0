"""/healthz, /readyz, /metrics, and `radtriage send` as a scanner."""

from __future__ import annotations

import subprocess
import sys

import pytest
from fastapi.testclient import TestClient

from radtriage.api import create_app
from radtriage.db import instances
from tests.helpers import make_ct_series


@pytest.fixture
def client(services, runtime):
    return TestClient(create_app(services, runtime))


def test_health_and_readiness(client, runtime):
    assert client.get("/healthz").json() == {"status": "ok"}
    r = client.get("/readyz")
    assert r.status_code == 200 and r.json()["checks"]["dicom_listener"] == "ok"
    runtime.started = False
    r = client.get("/readyz")
    assert r.status_code == 503
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["checks"]["dicom_listener"] == "stopped"
    runtime.started = True


def test_send_cli_then_metrics(client, runtime, services, tmp_path):
    files = make_ct_series(tmp_path / "s", 3)
    (tmp_path / "s" / "junk.txt").write_text("not dicom")
    r = subprocess.run(
        [sys.executable, "-m", "radtriage.cli", "send", str(tmp_path / "s"),
         "--to", f"127.0.0.1:{runtime.scp.port}", "--aet", "CT_ED_1"],
        capture_output=True, text=True, timeout=60,
    )
    assert "sent 3" in r.stdout and "junk.txt" in r.stdout
    rows = instances.instance_rows(services.db)
    assert len(rows) == 3 and {row["calling_ae"] for row in rows} == {"CT_ED_1"}
    text = client.get("/metrics").text
    assert 'radtriage_instances_received_total{outcome="stored",source="dimse"} 3.0' in text
    size = sum(f.stat().st_size for f in files)
    # the stored files carry the meta the SCP writes, so bytes >= the data sets sent
    line = next(l for l in text.splitlines() if l.startswith('radtriage_bytes_received_total{source="dimse"}'))
    assert float(line.split()[-1]) >= size * 0.9
    assert 'radtriage_store_seconds_count{source="dimse"} 3.0' in text
    assert 'radtriage_associations_total{outcome="accepted"}' in text


def test_unknown_routes_are_problem_details(client):
    r = client.get("/no/such/thing")
    assert r.status_code == 404 and r.headers["content-type"] == "application/problem+json"
