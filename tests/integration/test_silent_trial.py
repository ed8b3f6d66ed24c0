"""The evidence of a commissioning: a silent trial's reads, stored-study validation, signed decisions.

Synthetic CT heads are imported and run by `radtriage serve`'s own runtime (in-process, stroke_ich only)
while stroke_ich is in shadow. A commissioning reader records each study's truth through the API; the
silent trial's evidence and `radtriage validate --pipeline --truth` (the same studies named by accession
in a truth CSV) give the same numbers. A promotion on too little silent-trial evidence is refused naming
the shortfall; a promotion on enough evidence is signed and its report served, and the signature fails
once the decision is altered in the database.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pydicom
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update

from radtriage.db import accounts, audit
from radtriage.db import governance as rows
from radtriage.db.tables import model_decisions
from radtriage.synth import synthesize
from tests.helpers import wait_jobs_final
from tests.integration.test_model_decisions import ich_evidence

REPO = Path(__file__).resolve().parents[2]
PASSWORD = "correct horse battery"
ROUNDS = 200


def _client(services, *roles: str) -> TestClient:
    from radtriage.api import create_app

    client = TestClient(create_app(services))
    client.as_ = {}
    for role in roles:
        if accounts.get_user(services.db, f"{role}1") is None:
            accounts.add_user(services.db, f"{role}1", role, PASSWORD)
        client.as_[role] = {"Authorization": f"Bearer {accounts.issue_token(services.db, f'{role}1')}"}
    return client


@pytest.fixture(scope="module")
def heads(tmp_path_factory) -> list[Path]:
    root = tmp_path_factory.mktemp("heads")
    return [synthesize("ct-head", 1, 60 + i, root / f"h{i}", {"positive": i % 2 == 0, "matrix": 128})[0]
            for i in range(6)]


def _accession(folder: Path) -> str:
    return str(pydicom.dcmread(next(folder.glob("*.dcm")), stop_before_pixels=True).AccessionNumber)


@pytest.mark.slow
def test_silent_trial_reads_give_the_same_metrics_as_validate_on_the_same_stored_studies(
        make_settings, tmp_path, heads):
    from radtriage.governance.decide import decide, pipelines
    from radtriage.ingest.importer import import_folder
    from radtriage.service import Runtime, build_services
    from radtriage.validation.site import validate_site
    from tests.integration.test_dispatcher import _settings as ich_only

    settings = ich_only(make_settings, tmp_path)
    services = build_services(settings)
    accounts.add_user(services.db, "admin1", "admin", PASSWORD)
    decide(services.db, settings, "stroke_ich", "demote", "silent trial before going live", "admin1")
    runtime = Runtime(services)
    runtime.start()
    try:
        for h in heads:
            assert not import_folder(services.store, h).rejected
        n_series = sum(len(json.loads((h / "truth.json").read_text())["series"]) for h in heads)
        wait_jobs_final(services.db, n_series, timeout=300)
    finally:
        runtime.stop()
    truth = {_accession(h): json.loads((h / "truth.json").read_text()) for h in heads}
    shadow = rows.shadow_results(services.db, "stroke_ich")
    assert len(shadow) == len(heads) and {r["task"] for r in shadow} == {"ich"}

    with _client(services, "commissioning", "radiologist", "admin") as api:
        accession_of = {}
        for r in shadow:
            uid = r["study_uid"]
            accession_of[r["id"]] = next(a for a, h in zip(truth, heads) if
                                         str(pydicom.dcmread(next(h.glob("*.dcm")), stop_before_pixels=True)
                                             .StudyInstanceUID) == uid)
        first = shadow[0]["id"]
        url = f"/api/v1/shadow/results/{first}/truth"
        bad = api.post(url, headers=api.as_["commissioning"], json={"task": "ich", "present": False,
                                                                     "subtypes": ["subdural"]})
        assert bad.status_code == 422 and bad.headers["content-type"].startswith("application/problem+json")
        wrong = api.post(url, headers=api.as_["commissioning"], json={"task": "lvo", "present": False})
        assert wrong.status_code == 409 and "ich result" in wrong.json()["detail"], wrong.text
        assert api.post(url, headers=api.as_["radiologist"], json={"task": "ich", "present": False}).status_code == 403
        assert api.post("/api/v1/shadow/results/999999/truth", headers=api.as_["commissioning"],
                        json={"task": "ich", "present": False}).status_code == 404
        for r in shadow:
            t = truth[accession_of[r["id"]]]
            body = {"task": "ich", "present": bool(t["present"]), "subtypes": list(t.get("subtypes") or [])}
            got = api.post(f"/api/v1/shadow/results/{r['id']}/truth", headers=api.as_["commissioning"], json=body)
            assert got.status_code == 201, got.text
            assert got.json()["label"] == {"positive": body["present"], "subtypes": body["subtypes"]}
        listed = api.get("/api/v1/shadow", headers=api.as_["commissioning"]).json()["items"]
        assert all(i["read"] is not None for i in listed)

        ev = api.get(f"/api/v1/models/stroke_ich/evidence/shadow?rounds={ROUNDS}", headers=api.as_["commissioning"])
        assert ev.status_code == 200, ev.text
        from_reads = ev.json()
        refused = api.post("/api/v1/models/stroke_ich/promote", headers=api.as_["admin"],
                           json={"reason": "silent trial", "evidence": "shadow"})
        assert refused.status_code == 422 and "6 cases, at least 200 needed" in refused.json()["problems"]

    table = tmp_path / "site-truth.csv"
    with table.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["AccessionNumber", "present", "subtypes"])
        for acc, t in truth.items():
            w.writerow([acc, "yes" if t["present"] else "no", ";".join(t.get("subtypes") or [])])
    spec = pipelines(settings)["stroke_ich"]
    validated = validate_site(services.db, spec, settings.inference.models_dir, table, tmp_path / "v",
                              rounds=ROUNDS).document
    services.close()

    assert from_reads["n"] == validated["n"] == len(heads) and validated["n_refused"] == validated["n_failed"] == 0
    assert from_reads["dataset"]["kind"] == "prospective" and validated["dataset"]["kind"] == "retrospective"
    assert from_reads["threshold"] == validated["threshold"]
    for key in ("metrics", "subgroups"):
        assert from_reads[key] == validated[key], key
    assert [(c["id"], c["label"], c["prediction"]) for c in from_reads["cases"]] == \
           [(c["id"], c["label"], c["prediction"]) for c in validated["cases"]]
    m = validated["metrics"]
    assert m["positives"] == 3 and "calibration" in m and m["operating_point"]["target_sensitivity"] == 0.95
    assert {"manufacturer", "scanner", "kernel", "slice_thickness", "sex", "age_band"} <= set(validated["subgroups"])
    assert (tmp_path / "v" / "report.html").is_file()


def test_a_decision_is_signed_and_its_report_served_and_tampering_fails(make_settings):
    from radtriage.service import build_services

    services = build_services(make_settings(inference={
        "enabled": True, "use_ray": False, "pipelines_dir": str(REPO / "pipelines"), "models_dir": str(REPO / "models")}))
    with _client(services, "admin", "commissioning", "radiologist") as api:
        evidence = ich_evidence(240, 40)
        r = api.post("/api/v1/models/stroke_ich/promote", headers=api.as_["admin"],
                     json={"reason": "240 site heads, floors met", "evidence": evidence})
        assert r.status_code == 200, r.text
        decision = r.json()
        url = f"/api/v1/models/stroke_ich/decisions/{decision['id']}"
        assert api.get(f"{url}/report", headers=api.as_["radiologist"]).status_code == 403
        page = api.get(f"{url}/report", headers=api.as_["commissioning"])
        assert page.status_code == 200 and page.headers["x-radtriage-signature"] == "valid"
        html = page.text
        m = evidence["metrics"]
        op = m["operating_point"]
        for words in ("admin1", "240 site heads, floors met", "ich-densenet2d", f"{m['sensitivity']['value']:.3f}",
                      f"{m['specificity']['ci95'][0]:.3f}", f"{op['threshold']:.4f}", "Site operating point",
                      "sensitivity 95% CI lower bound", "met", 'id="subgroup-sex"', "data:image/png;base64,"):
            assert words in html, words
        signed = api.get(f"{url}/signature", headers=api.as_["admin"]).json()
        assert signed["valid"] is True and signed["signature"] in html and signed["problems"] == []
        assert json.loads(signed["signed"])["evidence_sha256"] == decision["evidence"]["sha256"]
        assert "<script" not in html and "http://" not in html and "https://" not in html

        with services.db.write() as conn:  # someone edits the decision behind radtriage's back
            conn.execute(update(model_decisions).where(model_decisions.c.id == decision["id"])
                         .values(reason="a better-sounding reason"))
        tampered = api.get(f"{url}/signature", headers=api.as_["admin"]).json()
        assert tampered["valid"] is False
        assert tampered["problems"] == ["the decision or its evidence differs from what was signed"]
        assert api.get(f"{url}/report", headers=api.as_["admin"]).headers["x-radtriage-signature"] == "invalid"
        _, trail = audit.entries(services.db, actor="commissioning1")
        assert "commissioning_report_viewed" in {e["action"] for e in trail}
    services.close()
