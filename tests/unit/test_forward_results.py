"""An edge's AI result on its way to a hub: the body the edge builds, what the hub accepts, and that a result
delivered twice is kept once (SQLite and PostgreSQL)."""

from __future__ import annotations

import copy
import datetime as dt

import pytest
from pydantic import ValidationError

from radtriage.config.forward import ForwardSettings
from radtriage.db import edge_results
from radtriage.db.engine import open_database
from radtriage.forward.payload import EdgeResult, body_of, said

NOW = dt.datetime(2026, 12, 8, 1, 30, tzinfo=dt.timezone.utc)


def recorded_row(**over) -> dict:
    """A result row as `radtriage.db.ledger.record_results` hands it to ``on_recorded`` (with its id)."""
    result = {"task": "ich", "model_id": "ich_densenet", "model_version": "1.0.0", "pipeline_version": "1.2.0",
              "positive": True, "scores": {"ich_probability": 0.91}, "labels": {"subtype": "subdural"},
              "findings": [{"code": "ich", "text": "Intracranial haemorrhage", "probability": 0.91,
                            "measurements": {"volume_ml": 12.5}, "key_image": "/data/results/7/ich-0.png"}],
              "timings_ms": {"model": 45.0}, "provider": "CPUExecutionProvider"}
    return {"id": 7, "pipeline_id": "stroke_ich", "pipeline_version": "1.2.0", "study_uid": "1.2.826.0.1.3",
            "series_uid": "1.2.826.0.1.3.1", "task": "ich", "model_id": "ich_densenet", "model_version": "1.0.0",
            "positive": True, "priority": "STAT", "result": result, "state": "live", **over}


def test_the_body_the_edge_builds_is_what_the_hub_accepts_without_the_key_image_path():
    body = body_of("kwc", recorded_row(), NOW)
    got = EdgeResult.model_validate(body)
    assert got.site == "kwc" and got.result_id == 7 and got.state == "live" and got.priority.value == "STAT"
    assert got.result.findings[0].text == "Intracranial haemorrhage" and got.result.scores == {"ich_probability": 0.91}
    assert "key_image" not in body["result"]["findings"][0]  # a file at the edge: it stays there
    assert said(body) == "AI at kwc (edge), stroke_ich 1.2.0, live: Intracranial haemorrhage (p 0.91)"
    negative = body_of("kwc", recorded_row(result={**recorded_row()["result"], "positive": False, "findings": []},
                                           state="shadow"), NOW)
    assert said(negative) == "AI at kwc (edge), stroke_ich 1.2.0, shadow: nothing found"


def _spoil(body: dict, path: tuple, value) -> dict:
    out = copy.deepcopy(body)
    where = out
    for k in path[:-1]:
        where = where[k]
    where[path[-1]] = value
    return out


@pytest.mark.parametrize(("path", "value", "says"), [
    (("study_uid",), "1.2.abc", "study_uid"),
    (("series_uid",), "1." + "2" * 70, "series_uid"),
    (("site",), "no site!", "site"),
    (("state",), "suspended", "state"),
    (("result_id",), 0, "result_id"),
    (("recorded_at",), "2026-12-08T01:30:00", "recorded_at"),  # no time zone
    (("pipeline_version",), "9.9.9", "pipeline_version"),  # not the result's
    (("result", "findings", 0, "text"), "x" * 501, "text"),
    (("result", "findings", 0, "key_image"), "/etc/passwd", "key_image"),  # a path of the edge: not a field here
    (("result", "findings", 0, "probability"), 1.5, "probability"),
    (("result", "scores"), {f"s{i}": 0.1 for i in range(65)}, "scores"),
    (("result", "findings"), [{"code": "x", "text": "x"}] * 65, "findings"),
    (("result", "task"), "ICH; drop", "task"),
    (("patient_id",), "P1", "patient_id"),  # unknown fields are refused
])
def test_the_hub_refuses_a_body_that_is_out_of_bounds_or_unknown(path, value, says):
    body = body_of("kwc", recorded_row(), NOW)
    with pytest.raises(ValidationError, match=says):
        EdgeResult.model_validate(_spoil(body, path, value))


def test_results_go_only_with_ai_at_the_edge_and_a_radtriage_hub():
    api = dict(site="kwc", stow_url="https://hub.example/dicomweb/studies", token_env="HUB_TOKEN")
    assert ForwardSettings(**api).results_url is None  # ai: hub: no results here
    assert ForwardSettings(**api, ai="edge").results_url == "https://hub.example/api/v1/forward/results"
    pacs = ForwardSettings(site="kwc", ai="edge", dicom={"ae_title": "PACS", "host": "pacs", "port": 104})
    assert pacs.results_url is None  # a PACS takes results as DICOM SR through exports:


def test_a_result_delivered_twice_is_kept_once(db_url):
    db = open_database(db_url)
    try:
        body = EdgeResult.model_validate(body_of("kwc", recorded_row(), NOW))
        values = edge_results.received_values({**body.model_dump(mode="json"), "recorded_at": body.recorded_at},
                                              "edge-kwc", NOW)
        with db.write() as conn:
            first = edge_results.keep(conn, values)
        with db.write() as conn:
            again = edge_results.keep(conn, {**values, "received_at": NOW + dt.timedelta(minutes=5)})
            other_site = edge_results.keep(conn, {**values, "site": "tmh"})  # another edge's result 7
        assert first[1] and not again[1] and again[0] == first[0]
        assert other_site[1] and other_site[0] != first[0]
        kept = edge_results.of_study(db, "1.2.826.0.1.3", shadow=False)
        assert [(r["site"], r["edge_result_id"], r["state"]) for r in kept] == [("kwc", 7, "live"), ("tmh", 7, "live")]
        assert kept[0]["received_at"] == NOW and kept[0]["result"]["findings"][0]["code"] == "ich"
        with db.write() as conn:
            edge_results.keep(conn, {**values, "edge_result_id": 8, "state": "shadow"})
        assert len(edge_results.of_study(db, "1.2.826.0.1.3", shadow=False)) == 2  # shadow: not for everyone
        assert len(edge_results.of_study(db, "1.2.826.0.1.3", shadow=True)) == 3
        assert set(edge_results.live_of_studies(db, ["1.2.826.0.1.3", "1.2.3"])) == {"1.2.826.0.1.3"}
    finally:
        db.dispose()
