"""The recognition list (examinations recognised across sites): the shipped EXAMPLE list loads and a broken one
stops start-up naming the file, the key and the problem; a synthetic head CT and a real CR chest radiograph
meet every criterion of their item, and miss each criterion in turn when the header (or the dose registry)
says otherwise; the API says so for a study received from another site, audited."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_testdata_file

from radtriage.ingest.parse import header_of
from radtriage.recognition import RecognitionListError, check_study, load_list
from radtriage.synth import synthesize

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "recognition" / "example.yaml"
NOW = dt.datetime(2026, 12, 7, 9, 0, tzinfo=dt.UTC)
KNOWN_DOSE = lambda: None  # noqa: E731 - the registry judged the dose within its reference level


def _header(path: Path) -> dict:
    ds = pydicom.dcmread(path)
    return header_of(ds, str(ds.file_meta.TransferSyntaxUID)).series_header()


@pytest.fixture(scope="module")
def head(tmp_path_factory) -> dict:
    folder = synthesize("ct-head", 1, 7, tmp_path_factory.mktemp("head"), {"positive": False, "matrix": 64})[0]
    ds_path = next(p for p in sorted(folder.glob("002_*.dcm")))  # the brain-kernel axial series
    return _header(ds_path)


def test_the_example_list_loads_and_a_broken_one_names_file_key_and_problem(tmp_path: Path, make_settings) -> None:
    listing = load_list(EXAMPLE)
    assert listing.name == "EXAMPLE - not an agreed list" and {i.id for i in listing.items} >= {"ct-head-plain"}
    bad = tmp_path / "bad.yaml"
    bad.write_text(EXAMPLE.read_text().replace("keyword: SliceThickness", "keyword: SliceThicknes"))
    with pytest.raises(RecognitionListError, match=r"bad\.yaml: items\.0\.criteria\.0\.rules.*SliceThicknes"):
        load_list(bad)
    from radtriage.service import build_services

    with pytest.raises(RecognitionListError, match="bad.yaml"):
        build_services(make_settings(recognition_file=bad))


def test_a_head_ct_meets_each_criterion_and_misses_each_in_turn(head: dict) -> None:
    listing = load_list(EXAMPLE)
    (ok,) = check_study(listing, [("1.2.3", head, 30)], KNOWN_DOSE)
    assert ok.recognised and ok.item == "ct-head-plain" and ok.words.startswith("recognised: meets CT head")
    misses = {
        "reconstructed at 5 mm or thinner": ({**head, "SliceThickness": 10.0}, 30, KNOWN_DOSE),
        "a soft-tissue (brain) kernel, not a bone kernel": ({**head, "ConvolutionKernel": "BONE"}, 30, KNOWN_DOSE),
        "the whole head covered (at least 24 slices)": (head, 12, KNOWN_DOSE),
        "no contrast given": ({**head, "ContrastBolusAgent": "IOHEXOL"}, 30, KNOWN_DOSE),
        "dose within the reference level": (head, 30, lambda: "above the reference level: CTDIvol 90 mGy"),
    }
    for criterion, (h, n, dose) in misses.items():
        (v,) = check_study(listing, [("1.2.3", h, n)], dose)
        assert not v.recognised and [m["criterion"] for m in v.missed] == [criterion], (criterion, v.missed)
    (unknown,) = check_study(listing, [("1.2.3", head, 30)])  # no dose known: not recognised, said why
    assert unknown.missed == [{"criterion": "dose within the reference level", "reason": "dose not known"}]
    # of two series of the study, the one that meets the criteria decides
    (best,) = check_study(listing, [("thick", {**head, "SliceThickness": 10.0}, 30), ("thin", head, 30)], KNOWN_DOSE)
    assert best.recognised and best.series_uid == "thin"


def test_a_chest_radiograph_meets_each_criterion_and_misses_each_in_turn() -> None:
    listing = load_list(EXAMPLE)
    cr = {**_header(Path(get_testdata_file("RG1_UNCR.dcm"))), "Modality": "DX", "BodyPartExamined": "CHEST",
          "ViewPosition": "PA", "ExposureIndex": 400}
    (ok,) = check_study(listing, [("1.2.4", cr, 1)])
    assert ok.recognised and ok.item == "chest-radiograph-pa"
    for criterion, h in {"a PA projection": {**cr, "ViewPosition": "AP"},
                         "digital detector": {**cr, "Modality": "CR"},
                         "exposure index within 200-1000": {**cr, "ExposureIndex": 1800}}.items():
        (v,) = check_study(listing, [("1.2.4", h, 1)])
        assert [m["criterion"] for m in v.missed] == [criterion]
    assert check_study(listing, [("1.2.5", {**cr, "BodyPartExamined": "HAND"}, 1)]) == []  # no item applies


def test_the_api_says_whether_a_study_from_another_site_is_recognised(make_settings, head: dict) -> None:
    from fastapi.testclient import TestClient
    from sqlalchemy import insert

    from radtriage.api import create_app
    from radtriage.db import accounts, audit
    from radtriage.db.tables import jobs, series, studies
    from radtriage.service import build_services

    services = build_services(make_settings(recognition_file=EXAMPLE))
    db = services.db
    with db.write() as conn:
        sid = conn.execute(insert(studies).values(study_uid="1.2.9", site="CHC-TKO", created_at=NOW)
                           ).inserted_primary_key[0]
        se = conn.execute(insert(series).values(
            study_id=sid, series_uid="1.2.9.2", state="ready", version=1, header=head, header_from_localizer=False,
            first_received_at=NOW, last_received_at=NOW, storage_dir="/nonexistent")).inserted_primary_key[0]
        conn.execute(insert(jobs).values(case_id="1.2.9.2/v1", series_id=se, series_version=1, state="done",
                                         attempts=1, next_attempt_at=NOW, created_at=NOW, updated_at=NOW,
                                         case={"header": head, "instance_count": 30}))
    accounts.add_user(db, "reader", "radiologist", "a long enough password 1", "Reader")
    auth = {"Authorization": f"Bearer {accounts.issue_token(db, 'reader')}"}
    with TestClient(create_app(services)) as api:
        body = api.get("/api/v1/studies/1.2.9/recognition", headers=auth).json()
        assert body["from_other_site"] and body["site"] == "CHC-TKO" and body["list"]["name"].startswith("EXAMPLE")
        (v,) = body["verdicts"]
        assert not v["recognised"] and v["missed"][0]["reason"].startswith("dose not known")  # no dose received
        assert api.get("/api/v1/studies/9.9.9/recognition", headers=auth).status_code == 404
    assert "recognition_checked" in [e["action"] for e in audit.entries(db, study_uid="1.2.9")[1]]
    services.close()
