"""Decisions on pipelines (issue 14): promotion on evidence that meets the floors, demotion, suspension.

Evidence is a metrics.json built by `radtriage validate`'s own code (`evaluate`, `build_document`) for
the committed ICH model at its operating threshold, from labels and scores made up here: enough cases
and positives, or too few. Promotion goes through the CLI (``radtriage models promote``, a real
process) and the API; demotion through the API clears the pipeline's flag on an unread study ("AI under
review") and keeps it on a study already claimed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from radtriage.db import accounts, audit, worklist
from radtriage.triage import seed

REPO = Path(__file__).resolve().parents[2]
PASSWORD = "correct horse battery"


def ich_evidence(cases: int, positives: int, seed_: int = 0) -> dict:
    """A metrics.json for the committed ICH model: ``positives`` of ``cases`` positive, scores well separated."""
    from radtriage.inference.card import load_card
    from radtriage.validation.evaluate import evaluate
    from radtriage.validation.run import CaseResult, build_document, operating_threshold

    card = load_card(REPO / "models" / "ich-densenet2d")
    thr = operating_threshold(card)
    rng = np.random.default_rng(seed_)
    results = []
    for i in range(cases):
        pos = i < positives
        score = float(rng.uniform(thr + 0.01, 1.0) if pos else rng.uniform(0.0, thr - 0.05))
        results.append(CaseResult(id=f"c{i}", label={"positive": pos, "subtypes": []}, groups={"sex": "FM"[i % 2]},
                                  prediction={"score": score, "positive": score >= thr, "subtype": None}, seconds=0.1))
    ev = evaluate("ich", [r.label for r in results], [r.prediction for r in results], [r.groups for r in results],
                  thr, rounds=200)
    return build_document(card, REPO / "models" / "ich-densenet2d", Path("site-heads"), None, thr, 200, results, ev)


def _settings(make_settings, **kw):
    return make_settings(inference={"enabled": True, "use_ray": False, "pipelines_dir": str(REPO / "pipelines"),
                                    "models_dir": str(REPO / "models")}, **kw)


@pytest.fixture
def api(make_settings):
    from radtriage.api import create_app
    from radtriage.service import build_services

    services = build_services(_settings(make_settings))
    headers = {}
    for role in ("radiologist", "admin", "commissioning"):
        accounts.add_user(services.db, f"{role}1", role, PASSWORD)
        headers[role] = {"Authorization": f"Bearer {accounts.issue_token(services.db, f'{role}1')}"}
    with TestClient(create_app(services)) as client:
        client.services, client.as_ = services, headers
        yield client
    services.close()


def _state(api, pipeline: str) -> dict:
    r = api.get("/api/v1/models", headers=api.as_["admin"])
    assert r.status_code == 200, r.text
    return next(p for p in r.json() if p["pipeline_id"] == pipeline)


def test_promotion_below_the_floors_is_refused_naming_the_shortfall_and_above_them_succeeds(api):
    assert _state(api, "stroke_ich")["source"] == "demonstration"  # development: live as a demonstration
    r = api.post("/api/v1/models/stroke_ich/demote", headers=api.as_["admin"], json={"reason": "silent trial first"})
    assert r.status_code == 200 and r.json()["state"] == "shadow"
    assert _state(api, "stroke_ich")["state"] == "shadow"

    thin = ich_evidence(150, 20)
    r = api.post("/api/v1/models/stroke_ich/promote", headers=api.as_["admin"],
                 json={"reason": "site validation", "evidence": thin})
    assert r.status_code == 422, r.text
    problems = r.json()["problems"]
    assert "150 cases, at least 200 needed" in problems and "20 positive cases, at least 30 needed" in problems
    assert _state(api, "stroke_ich")["state"] == "shadow"
    assert api.post("/api/v1/models/stroke_ich/promote", headers=api.as_["radiologist"],
                    json={"reason": "x", "evidence": thin}).status_code == 403
    assert api.post("/api/v1/models/stroke_ich/promote", headers=api.as_["commissioning"],
                    json={"reason": "x", "evidence": thin}).status_code == 403

    enough = ich_evidence(240, 40)
    assert enough["metrics"]["sensitivity"]["ci95"][0] >= 0.85 and enough["metrics"]["specificity"]["ci95"][0] >= 0.8
    r = api.post("/api/v1/models/stroke_ich/promote", headers=api.as_["admin"],
                 json={"reason": "240 site heads, floors met", "evidence": enough})
    assert r.status_code == 200, r.text
    decision = r.json()
    assert decision["state"] == "live" and decision["decided_by"] == "admin1"
    assert decision["evidence"]["measured"]["cases"] == 240 and "cases" not in decision["evidence"]["document"]
    now = _state(api, "stroke_ich")
    assert now["state"] == "live" and now["source"] == "decision"
    assert [d["action"] for d in now["decisions"]] == ["demote", "promote"]

    _, trail = audit.entries(api.services.db, actor="admin1")
    actions = [e["action"] for e in trail]
    assert {"model_demoted", "model_promote_refused", "model_promoted"} <= set(actions)
    refused = next(e for e in trail if e["action"] == "model_promote_refused")
    assert "150 cases, at least 200 needed" in refused["detail"]["problems"]


def test_demotion_clears_the_flag_of_unread_studies_only(api):
    db = api.services.db
    uids = seed.seed(db, 8, pending_fraction=0.0, positive_fraction=1.0)
    unread, claimed = uids[0], uids[4]  # every fourth seeded study is a positive stroke_ich one (STAT)
    assert worklist.entry(db, unread)["priority"] == worklist.entry(db, claimed)["priority"] == "STAT"
    assert api.post(f"/api/v1/studies/{claimed}/claim", headers=api.as_["radiologist"]).status_code == 200

    r = api.post("/api/v1/models/stroke_ich/demote", headers=api.as_["admin"], json={"reason": "false pages"})
    assert r.status_code == 200, r.text
    cleared, kept = worklist.entry(db, unread), worklist.entry(db, claimed)
    assert cleared["priority"] == "ROUTINE" and cleared["flags"] == [] and cleared["priority_reason"] == "AI under review"
    assert kept["priority"] == "STAT" and kept["flags"][0]["pipeline"] == "stroke_ich"
    assert worklist.entry(db, uids[1])["priority"] == "STAT"  # another pipeline's (stroke_lvo) flag stays


def test_cli_promote_refuses_then_promotes_signed_by_an_admin(make_settings, tmp_path):
    from radtriage.service import build_services

    settings = _settings(make_settings)
    services = build_services(settings)
    accounts.add_user(services.db, "chief", "admin", PASSWORD)
    accounts.add_user(services.db, "reader", "radiologist", PASSWORD)
    services.close()
    config = tmp_path / "radtriage.yaml"
    config.write_text(json.dumps({"data_dir": str(settings.data_dir), "inference": {
        "pipelines_dir": str(REPO / "pipelines"), "models_dir": str(REPO / "models")}}))
    thin, enough = tmp_path / "thin.json", tmp_path / "enough.json"
    thin.write_text(json.dumps(ich_evidence(150, 40)))
    enough.write_text(json.dumps(ich_evidence(240, 40)))

    def models(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "radtriage.cli", "--config", str(config), "models", *args],
                              capture_output=True, text=True, timeout=120, cwd=tmp_path,
                              env={**os.environ, "RADTRIAGE_ENVIRONMENT": "development"})

    r = models("promote", "stroke_ich", "--evidence", str(thin), "--reason", "site data", "--by", "chief")
    assert r.returncode == 1 and "150 cases, at least 200 needed" in r.stderr, r.stderr
    r = models("promote", "stroke_ich", "--evidence", str(enough), "--reason", "site data", "--by", "reader")
    assert r.returncode == 1 and "not an active admin account" in r.stderr, r.stderr
    r = models("promote", "stroke_ich", "--evidence", str(enough), "--reason", "site data", "--by", "chief")
    assert r.returncode == 0 and "stroke_ich: live (promote by chief" in r.stdout, r.stderr
    r = models("suspend", "stroke_ich", "--reason", "scanner upgrade", "--by", "chief")
    assert r.returncode == 0, r.stderr
    listed = models("list")
    assert listed.returncode == 0
    line = next(l for l in listed.stdout.splitlines() if l.startswith("stroke_ich"))
    assert line.split()[1] == "suspended" and "scanner upgrade" in line


def test_in_development_the_worklist_and_study_pages_say_the_models_are_demonstrations(api):
    from radtriage.governance import DEMONSTRATION

    uid = seed.seed(api.services.db, 1, pending_fraction=0.0)[0]
    for page in ("/", f"/studies/{uid}"):
        r = api.get(page, headers=api.as_["radiologist"])
        assert r.status_code == 200 and DEMONSTRATION in r.text, page
    assert DEMONSTRATION == "synthetic-trained demonstration models, not commissioned for this site"
