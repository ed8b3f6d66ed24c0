"""Evidence for commissioning: truths in a task's terms, the site's operating point and calibration, the
input guard in validation, a site's truth CSV, and signed decisions with their report."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
from pydantic import TypeAdapter, ValidationError

from radtriage.governance import report
from radtriage.inference.card import write_card
from radtriage.validation import run as vrun
from radtriage.validation.evaluate import binary_operating_point, calibration, evaluate, nodule_operating_point
from radtriage.validation.site import read_truths
from radtriage.validation.truth import Truth, TruthError, groups_of, label_of, prediction_of
from tests.unit.test_validation import identity_model

TRUTH = TypeAdapter(Truth)
NODULE_RESULT = {"task": "nodule", "positive": True, "scores": {"nodule": 0.9}, "labels": {}, "findings": [
    {"code": "nodule", "text": "Lung-RADS 4A, 9 mm", "probability": 0.9,
     "measurements": {"x_mm": 10.0, "y_mm": -20.0, "z_mm": 30.0, "longest_diameter_mm": 9.0}},
    {"code": "nodule", "text": "Lung-RADS 3, 7 mm", "probability": 0.6,
     "measurements": {"x_mm": -50.0, "y_mm": 5.0, "z_mm": 80.0, "longest_diameter_mm": 7.0}},
    {"code": "series:thick-slices", "text": "series thick slices"}]}


def test_truths_are_checked_in_each_tasks_terms():
    ich = TRUTH.validate_python({"task": "ich", "present": True, "subtypes": ["subdural"]})
    assert label_of(ich) == {"positive": True, "subtypes": ["subdural"]}
    lvo = TRUTH.validate_python({"task": "lvo", "present": True, "side": "left", "segment": "m1"})
    assert label_of(lvo) == {"positive": True, "side": "left", "segment": "m1"}
    for bad in ({"task": "ich", "present": False, "subtypes": ["subdural"]}, {"task": "ich", "present": True,
                "subtypes": ["chronic"]}, {"task": "lvo", "present": True}, {"task": "bone_age", "bone_age_months": -1},
                {"task": "nodule", "nodules": [{"verdict": "added", "diameter_mm": 5}]},
                {"task": "nodule", "nodules": [{"verdict": "confirmed", "finding": 0}]}, {"task": "xray"},
                {"task": "ich", "present": False, "extra": 1}):
        with pytest.raises(ValidationError):
            TRUTH.validate_python(bad)


def test_a_nodule_read_confirms_rejects_and_adds_against_the_ais_findings():
    read = TRUTH.validate_python({"task": "nodule", "nodules": [
        {"verdict": "confirmed", "finding": 0, "diameter_mm": 8.5}, {"verdict": "rejected", "finding": 1},
        {"verdict": "added", "centre_mm": [1, 2, 3], "diameter_mm": 6}]})
    assert label_of(read, NODULE_RESULT) == {"nodules": [
        {"centre_mm": [10.0, -20.0, 30.0], "diameter_mm": 8.5, "type": None},
        {"centre_mm": [1.0, 2.0, 3.0], "diameter_mm": 6.0, "type": None}]}
    assert prediction_of("nodule", NODULE_RESULT)["nodules"][1] == {"centre_mm": [-50.0, 5.0, 80.0],
                                                                     "diameter_mm": 7.0, "score": 0.6}
    partial = TRUTH.validate_python({"task": "nodule", "nodules": [{"verdict": "rejected", "finding": 3}]})
    with pytest.raises(TruthError, match="finding 3 does not exist.*finding 0 is not read.*finding 1 is not read"):
        label_of(partial, NODULE_RESULT)


def test_a_stored_result_reads_as_the_validation_prediction_and_its_series_as_subgroups():
    ich = {"positive": True, "scores": {"ich": 0.83, "threshold": 0.4}, "labels": {"subtype": "subdural"}}
    assert prediction_of("ich", ich) == {"score": 0.83, "positive": True, "subtype": "subdural"}
    lvo = {"positive": False, "scores": {"lvo": 0.1}, "labels": {"side": "None", "segment": "None"}}
    assert prediction_of("lvo", lvo) == {"score": 0.1, "positive": False, "side": None, "segment": None}
    header = {"Manufacturer": "ACME", "ManufacturerModelName": "Scan 64", "ConvolutionKernel": ["H30s", "x"],
              "SliceThickness": "5.0", "PatientAge": "071Y", "PatientSex": "F"}
    assert groups_of(header) == {"sex": "F", "age_band": "65-79", "manufacturer": "ACME", "scanner": "Scan 64",
                                 "kernel": "H30s", "slice_thickness": "5 mm"}
    assert groups_of({}, "M") == {"sex": "M", "age_band": "unknown"}


def test_the_site_operating_point_keeps_the_sensitivity_and_gives_its_specificity():
    y = [1, 1, 1, 1, 0, 0, 0, 0, 0]
    s = [0.9, 0.8, 0.7, 0.3, 0.75, 0.2, 0.1, 0.05, 0.5]
    op = binary_operating_point(y, s, 0.75, rounds=50)
    assert op["threshold"] == 0.7 and op["sensitivity"]["value"] == 0.75 and op["specificity"]["value"] == 0.8
    assert op["counts"] == {"tp": 3, "fp": 1, "tn": 4, "fn": 1}
    every = binary_operating_point(y, s, 1.0, rounds=0)
    assert every["threshold"] == 0.3 and every["sensitivity"]["value"] == 1.0 and every["specificity"]["value"] == 0.6
    curve = {"thresholds": [float("inf"), 0.9, 0.6, 0.2], "sensitivity": [0.0, 0.5, 0.9, 1.0],
             "fp_per_scan": [0.0, 0.1, 0.5, 3.0]}
    assert nodule_operating_point(curve, 0.9) == {"target_sensitivity": 0.9, "threshold": 0.6, "reached": True,
                                                  "sensitivity": 0.9, "fp_per_scan": 0.5}
    assert nodule_operating_point(curve, 1.01)["reached"] is False


def test_calibration_bins_the_scores_and_scores_the_fit():
    cal = calibration([0, 0, 1, 1, 1], [0.05, 0.15, 0.85, 0.95, 1.0], bins=10)
    assert [(b["lower"], b["n"], b["observed"]) for b in cal["bins"]] == [(0.0, 1, 0.0), (0.1, 1, 0.0),
                                                                        (0.8, 1, 1.0), (0.9, 2, 1.0)]
    assert cal["brier"] == pytest.approx((0.05**2 + 0.15**2 + 0.15**2 + 0.05**2) / 5)
    ev = evaluate("ich", [{"positive": bool(v)} for v in [0, 0, 1, 1, 1]],
                  [{"score": v} for v in [0.05, 0.15, 0.85, 0.95, 1.0]], threshold=0.5, rounds=20)
    assert ev["metrics"]["calibration"] == cal and ev["metrics"]["operating_point"]["threshold"] == 0.85


def test_validation_refuses_cases_outside_the_validated_range_as_the_live_path_does(tmp_path):
    from radtriage.datasets import Example
    from radtriage.imaging.volume import Volume
    from radtriage.inference.card import ValidatedRange, load_card
    from radtriage.validation.run import load_model

    import numpy as np

    folder = identity_model(tmp_path / "tiny")
    card = load_card(folder).model_copy(update={"validated_range": ValidatedRange(
        kind="hand", source="test", checks={"age_months": {"min": 0, "max": 216}})})
    write_card(folder, card)
    net = load_model(folder)
    calls = []

    def hand(months: str | None) -> Volume:
        meta = {"PatientAge": months} if months else {}
        return Volume(array=np.zeros((64, 64), np.float32), spacing=(0.2, 0.2), meta=meta)

    cases = [Example(id=f"h{i}", task="bone_age", label={"bone_age_months": 100.0}, load=lambda a=a: hand(a))
             for i, a in enumerate(["010Y", "030Y"])]
    got = vrun.predict_cases(net, lambda m, v: calls.append(v) or {"bone_age_months": 99.0}, cases)
    assert [r.refused is None for r in got] == [True, False] and len(calls) == 1
    assert got[1].refused.startswith("AI not applicable: outside the model's validated range (age_months 360")
    doc = vrun.document(card, folder, got, None, 20, 0.95, {"path": "x", "layout": "y", "kind": "retrospective"})
    assert doc["n"] == 1 and doc["n_refused"] == 1 and doc["refused"][0]["id"] == "h1" and doc["n_failed"] == 0


def test_a_sites_truth_csv_reads_as_truths_and_bad_rows_are_named(tmp_path):
    f = tmp_path / "t.csv"
    f.write_text("Accession Number,ICH,Subtype\nA1,yes,subdural;epidural\nA2,0,\n")
    got = read_truths(f, "ich")
    assert got["A1"].present and got["A1"].subtypes == ["subdural", "epidural"] and not got["A2"].present
    f.write_text("accession,x_mm,y_mm,z_mm,diameter_mm\nN1,1,2,3,6\nN1,4,5,6,8\nN2,,,,\n")
    nodules = read_truths(f, "nodule")
    assert label_of(nodules["N1"])["nodules"][1] == {"centre_mm": [4.0, 5.0, 6.0], "diameter_mm": 8.0, "type": None}
    assert label_of(nodules["N2"]) == {"nodules": []}
    f.write_text("accession,present\nA1,maybe\n")
    with pytest.raises(vrun.ValidationError, match="accession A1"):
        read_truths(f, "ich")
    f.write_text("accession,side\nA1,left\n")
    with pytest.raises(vrun.ValidationError, match="no column for 'present'"):
        read_truths(f, "lvo")


def _decision(evidence=None) -> dict:
    return {"id": 7, "pipeline_id": "stroke_ich", "action": "demote", "state": "shadow", "reason": "false pages",
            "model_id": "ich-x", "model_version": "1.0", "model_sha256": "a" * 64, "thresholds": {"any": 0.4},
            "fingerprint": "f" * 64, "decided_by": "chief", "evidence": evidence,
            "decided_at": datetime(2026, 12, 7, 9, 30, tzinfo=timezone.utc)}


def test_a_signed_decision_verifies_and_any_change_or_another_key_fails():
    key = b"k" * 48
    d = _decision()
    signed, sig, html = report.commission(key, d)
    kept = {"signed": signed, "signature": sig}
    assert report.verify(key, d, kept) == []
    assert sig in html and "chief" in html and "2026-12-07T09:30:00+00:00" in html and "false pages" in html
    assert report.verify(b"other" * 10, d, kept) == [
        "the signature was not made with this site's key over what it says it signed"]
    for change in ({"reason": "other"}, {"decided_by": "mallory"}, {"thresholds": {"any": 0.1}},
                   {"evidence": {"sha256": "0" * 64}}):
        assert report.verify(key, {**d, **change}, kept) == ["the decision or its evidence differs from what was signed"]
    forged = {"signed": signed.replace("false pages", "other"), "signature": sig}
    assert len(report.verify(key, {**d, "reason": "other"}, forged)) == 1
    assert report.verify(key, d, None) == ["the decision has no signature"]
