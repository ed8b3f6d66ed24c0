"""An edge running AI (``forward.ai: edge``) and its radtriage hub, in one process with their own data
directories and databases, the hub served over HTTP on loopback: the edge's results, recorded while the hub
is away, reach it once it is up, are kept once when delivered again, and show at the hub with their origin,
apart from the hub's own results; the edge's shadow result is hidden from a radiologist, shown to an admin."""

from __future__ import annotations

import datetime as dt

import pydicom
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update

import tests.helpers as helpers
from radtriage.api import create_app
from radtriage.assembly.assembler import _case_document
from radtriage.assembly.complete import close_ready_series
from radtriage.db import accounts, audit, ledger
from radtriage.db import forward as forward_rows
from radtriage.db.clock import utcnow
from radtriage.db.instances import Origin
from radtriage.db.tables import edge_results, outbox
from radtriage.db.tables import results as results_table
from radtriage.forward import results
from radtriage.forward.worker import Forwarding
from radtriage.service import build_services
from radtriage.triage.live import Triage
from tests.helpers import free_port, make_ct_series, serving, wait_settled

ICH = {"task": "ich", "model_id": "ich_densenet", "model_version": "1.0.0", "pipeline_version": "1.2.0",
       "positive": True, "scores": {"ich_probability": 0.93},
       "findings": [{"code": "ich", "text": "Intracranial haemorrhage", "probability": 0.93,
                     "key_image": "/edge/data/results/1/ich-0.png"}]}
LVO = {"task": "lvo", "model_id": "lvo_net", "model_version": "0.3.0", "pipeline_version": "0.3.0",
       "positive": True, "scores": {"lvo_probability": 0.81},
       "findings": [{"code": "lvo", "text": "Large vessel occlusion, left M1", "probability": 0.81}]}
LIVE_SAID = "AI at kwc (edge), stroke_ich 1.2.0, live: Intracranial haemorrhage (p 0.93)"


def _store_closed(services, paths) -> None:
    for p in paths:
        services.store.store_instance([p.read_bytes()], Origin("stow"))
    close_ready_series(services.db, dt.timedelta(0), dt.timedelta(seconds=1), _case_document,
                       now=utcnow() + dt.timedelta(seconds=5))


def _record_at_edge(edge, forwarding: Forwarding, series_uid: str, study_uid: str) -> None:
    """The edge's dispatcher recording a live ICH and a shadow LVO result, with the hook `radtriage serve` sets."""
    job = ledger.claim_job(edge.db, "test", 60)
    assert job is not None
    row = {"study_uid": study_uid, "series_uid": series_uid}
    rows = [{**row, "pipeline_id": "stroke_ich", "pipeline_version": "1.2.0", "task": "ich", "model_id": "ich_densenet",
             "model_version": "1.0.0", "positive": True, "priority": "STAT", "result": ICH, "state": "live"},
            {**row, "pipeline_id": "stroke_lvo", "pipeline_version": "0.3.0", "task": "lvo", "model_id": "lvo_net",
             "model_version": "0.3.0", "positive": True, "priority": "STAT", "result": LVO, "state": "shadow"}]
    assert forwarding.sends_results
    ledger.record_results(edge.db, job.id, rows, then=forwarding.then_queue_results(None))


def _result_rows(edge) -> list[tuple]:
    with edge.db.read() as conn:
        return [tuple(r) for r in conn.execute(select(outbox.c.idempotency_key, outbox.c.attempts, outbox.c.state)
                                               .where(outbox.c.kind == results.KIND).order_by(outbox.c.id))]


@pytest.fixture
def nodes(make_settings, tmp_path, monkeypatch):
    hub_port = free_port()
    hub = build_services(make_settings(data_dir=tmp_path / "hub"))
    edge = build_services(make_settings(data_dir=tmp_path / "edge", forward={
        "site": "kwc", "issuer": "KWC-HOSP", "ai": "edge", "stow_url": f"http://127.0.0.1:{hub_port}/dicomweb/studies",
        "token_env": "HUB_TOKEN", "backoff_s": 0.05, "max_backoff_s": 0.2}))
    accounts.add_user(hub.db, "edge-kwc", "service")
    monkeypatch.setenv("HUB_TOKEN", accounts.issue_token(hub.db, "edge-kwc"))
    yield edge, hub, hub_port
    edge.close()
    hub.close()


def test_edge_results_reach_the_hub_once_after_it_was_away_and_show_with_their_origin(nodes, tmp_path, monkeypatch):
    edge, hub, hub_port = nodes
    paths = make_ct_series(tmp_path / "ct", 3, PatientID="P1")
    head = pydicom.dcmread(paths[0], stop_before_pixels=True)
    study_uid, series_uid = head.StudyInstanceUID, head.SeriesInstanceUID
    _store_closed(edge, paths)
    _store_closed(hub, paths)  # what the edge's forward rows brought (test_forward_edge_hub.py)
    Triage(hub.db, inference_enabled=False, poll_s=0.05).run_once()
    forwarding = Forwarding(edge.db, edge.settings)
    _record_at_edge(edge, forwarding, series_uid, study_uid)
    assert [r[0] for r in _result_rows(edge)] == ["forward-result:1", "forward-result:2"]

    # the hub is away: each row is tried, kept and retried; nothing reaches the hub
    assert forwarding.worker.deliver_one() and forwarding.worker.deliver_one()
    assert [r[1:] for r in _result_rows(edge)] == [(1, "pending"), (1, "pending")]
    with edge.db.read() as conn:
        errors = set(conn.execute(select(outbox.c.last_error).where(outbox.c.kind == results.KIND)).scalars())
    assert errors == {"hub: AI result: ConnectError"}

    # the hub comes up on its address: both arrive
    monkeypatch.setattr(helpers, "free_port", lambda: hub_port)
    with serving(create_app(hub)) as url:
        assert url.endswith(f":{hub_port}")
        forwarding.worker.start()
        try:
            settled = wait_settled(lambda: _result_rows(edge), 2, what="edge results")
            assert [r[2] for r in settled] == ["delivered", "delivered"]
            # an answer lost on the way (the edge's lease ran out): the same row goes again, kept once
            with edge.db.write() as conn:
                conn.execute(update(outbox).where(outbox.c.idempotency_key == "forward-result:1")
                             .values(state="pending", next_attempt_at=utcnow()))
            forwarding.worker.wake()
            assert [r[2] for r in wait_settled(lambda: _result_rows(edge), 2, what="again")] == ["delivered"] * 2
        finally:
            forwarding.stop()
    with hub.db.read() as conn:
        kept = conn.execute(select(edge_results.c.site, edge_results.c.edge_result_id, edge_results.c.state,
                                   edge_results.c.received_by)).all()
    assert sorted(tuple(k) for k in kept) == [("kwc", 1, "live", "edge-kwc"), ("kwc", 2, "shadow", "edge-kwc")]
    _, received = audit.entries(hub.db, action="edge_result_received")
    assert sorted((e["detail"]["edge_result_id"], e["detail"]["new"]) for e in received) == [
        (1, False), (1, True), (2, True)]
    _, forwarded = audit.entries(edge.db, action="result_forwarded")
    assert len(forwarded) == 3 and {e["detail"]["hub"] for e in forwarded} == {"hub"}

    _shown_at_the_hub(hub, study_uid)


def _shown_at_the_hub(hub, study_uid: str) -> None:
    for name, role in (("reader", "radiologist"), ("boss", "admin")):
        accounts.add_user(hub.db, name, role, "a-long-enough-password-1")
    client = TestClient(create_app(hub))
    as_ = {n: {"Authorization": f"Bearer {accounts.issue_token(hub.db, n)}"} for n in ("reader", "boss", "edge-kwc")}
    seen = client.get(f"/api/v1/studies/{study_uid}", headers=as_["reader"]).json()
    assert [e["said"] for e in seen["edge_results"]] == [LIVE_SAID]  # the shadow LVO: not for a radiologist
    assert seen["results"] == []  # the hub's own results are apart (it ran none)
    edge_ich = seen["edge_results"][0]
    assert edge_ich["model_id"] == "ich_densenet" and edge_ich["findings"][0]["code"] == "ich"
    assert "key_image" not in edge_ich["findings"][0]  # the edge's file stays at the edge
    assert seen["entry"]["edge_ai"] == [LIVE_SAID] and seen["entry"]["priority"] != "STAT"  # not the hub's priority
    page = client.get("/api/v1/worklist", headers=as_["reader"]).json()
    assert [i["edge_ai"] for i in page["items"]] == [[LIVE_SAID]]
    boss = client.get(f"/api/v1/studies/{study_uid}", headers=as_["boss"]).json()
    assert [(e["state"], e["pipeline_id"]) for e in boss["edge_results"]] == [("live", "stroke_ich"),
                                                                              ("shadow", "stroke_lvo")]
    assert boss["edge_results"][1]["said"] == ("AI at kwc (edge), stroke_lvo 0.3.0, shadow: "
                                               "Large vessel occlusion, left M1 (p 0.81)")
    body = {"site": "kwc", "result_id": 9, "study_uid": study_uid, "series_uid": study_uid, "pipeline_id": "stroke_ich",
            "pipeline_version": "1.2.0", "state": "live", "priority": "STAT",
            "recorded_at": "2026-12-08T01:00:00+00:00", "result": {**ICH, "findings": []}}
    assert client.post("/api/v1/forward/results", json=body, headers=as_["reader"]).status_code == 403
    assert client.post("/api/v1/forward/results", json={**body, "extra": 1}, headers=as_["edge-kwc"]).status_code == 422
    big = {**body, "result": {**body["result"], "labels": {"note": "x" * 300_000}}}
    assert client.post("/api/v1/forward/results", json=big, headers=as_["edge-kwc"]).status_code == 413
    refused = client.post("/api/v1/forward/results", json={**body, "study_uid": "1.2.x"}, headers=as_["edge-kwc"])
    assert refused.status_code == 422 and refused.json()["errors"][0]["loc"] == ["study_uid"]
    ok = client.post("/api/v1/forward/results", json=body, headers=as_["edge-kwc"])
    assert ok.status_code == 200 and ok.json()["new"] is True
    with hub.db.write() as conn:
        forward_rows.mark_site(conn, study_uid, "kwc")  # the edge's series check told the hub where it came from
    other = client.post("/api/v1/forward/results", json={**body, "site": "tmh", "result_id": 10},
                        headers=as_["edge-kwc"])
    assert other.status_code == 409  # a study keeps the site it came from
    total, refused = audit.entries(hub.db, action="edge_result_refused")
    assert total == 1 and refused[0]["detail"]["study_site"] == "kwc"


@pytest.mark.slow
def test_radtriage_serve_at_the_edge_sends_the_result_its_dispatcher_records(make_settings, tmp_path, monkeypatch):
    """The edge's `Runtime` as `radtriage serve` runs it (the ICH pipeline in-process): a synthetic ICH-positive
    CT head stored there is assembled, run, recorded, and its result reaches the hub, said with its origin."""
    import shutil
    import time
    from pathlib import Path

    from radtriage.service import Runtime
    from radtriage.synth import synthesize

    repo = Path(__file__).resolve().parents[2]
    pipelines = tmp_path / "pipelines"
    pipelines.mkdir()
    shutil.copy(repo / "pipelines" / "stroke_ich.yaml", pipelines)
    hub = build_services(make_settings(data_dir=tmp_path / "hub"))
    accounts.add_user(hub.db, "edge-kwc", "service")
    monkeypatch.setenv("HUB_TOKEN", accounts.issue_token(hub.db, "edge-kwc"))
    study = synthesize("ct-head", 1, 21, tmp_path / "study", {"positive": True, "subtypes": ["intraparenchymal"]})[0]
    with serving(create_app(hub)) as url:
        edge = build_services(make_settings(
            data_dir=tmp_path / "edge", forward={"site": "kwc", "ai": "edge", "stow_url": url + "/dicomweb/studies",
                                                 "token_env": "HUB_TOKEN"},
            inference={"enabled": True, "use_ray": False, "pipelines_dir": str(pipelines),
                       "models_dir": str(repo / "models"), "in_flight": 1, "poll_s": 0.05}))
        runtime = Runtime(edge)
        runtime.start()
        try:
            _store_closed(edge, sorted(study.rglob("*.dcm")))
            deadline = time.monotonic() + 300
            while not edge_results_of(hub) and time.monotonic() < deadline:
                time.sleep(0.2)
            kept = edge_results_of(hub)
            with edge.db.read() as conn:
                recorded = conn.execute(select(results_table.c.id, results_table.c.state)).all()
        finally:
            runtime.stop()
            edge.close()
    hub.close()
    assert len(kept) == 1 and [(r["edge_result_id"], r["state"]) for r in kept] == [tuple(r) for r in recorded]
    assert kept[0]["pipeline_id"] == "stroke_ich" and kept[0]["site"] == "kwc" and kept[0]["positive"]
    assert all("key_image" not in f for f in kept[0]["result"]["findings"])


def edge_results_of(hub) -> list[dict]:
    with hub.db.read() as conn:
        return [dict(r) for r in conn.execute(select(edge_results)).mappings()]
