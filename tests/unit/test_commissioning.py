"""Commissioning floors in pipeline files, and what `radtriage.governance.evidence` says of evidence."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from radtriage.governance.evidence import shortfalls
from radtriage.governance.state import Fingerprint, fingerprint, resolve
from radtriage.pipelines import PipelineConfigError, load_pipelines, parse_pipeline

REPO = Path(__file__).resolve().parents[2]


def test_each_shipped_pipeline_states_its_floors_and_why():
    for spec in load_pipelines(REPO / "pipelines"):
        assert spec.commissioning is not None and spec.commissioning.min_cases >= 100, spec.id
        assert len(spec.commissioning.reason) > 40, spec.id


def test_a_floor_that_does_not_fit_the_task_is_refused():
    data = yaml.safe_load((REPO / "pipelines" / "stroke_ich.yaml").read_text())
    data["commissioning"]["mae_upper_months"] = 9.0
    with pytest.raises(PipelineConfigError, match="mae_upper_months do not apply to a ich pipeline"):
        parse_pipeline(data, "stroke_ich.yaml")


def _doc(fp: Fingerprint, **model) -> dict:
    m = {"n": 300, "positives": 50, "sensitivity": {"value": 0.96, "ci95": [0.9, 0.99]},
         "specificity": {"value": 0.9, "ci95": [0.86, 0.93]}}
    return {"task": "ich", "threshold": fp.thresholds["any"], "metrics": m,
            "model": {"id": fp.model_id, "version": fp.model_version, "sha256": fp.model_sha256, **model}}


def test_evidence_about_another_model_version_or_threshold_needs_carrying_over():
    spec = next(s for s in load_pipelines(REPO / "pipelines") if s.id == "stroke_ich")
    fp = fingerprint(spec, REPO / "models")
    assert shortfalls(spec, fp, _doc(fp)) == []
    older = _doc(fp, version="0.0.1", sha256="0" * 64)
    [problem] = shortfalls(spec, fp, older)
    assert "model version 0.0.1" in problem and "carry the evidence over" in problem
    assert shortfalls(spec, fp, older, carry_over=True) == []
    moved = {**_doc(fp), "threshold": 0.5}
    assert "measured at threshold 0.5" in shortfalls(spec, fp, moved)[0]
    low = _doc(fp)
    low["metrics"]["specificity"]["ci95"][0] = 0.7
    assert shortfalls(spec, fp, low) == ["specificity 95% CI lower bound 0.700, at least 0.8 needed"]


def test_a_new_model_version_or_threshold_starts_again_in_shadow():
    fp = Fingerprint("stroke_ich", "ich-x", "1.0", "a" * 64, {"any": 0.9}, "ich", synthetic=False)
    promoted = [{"id": 1, "fingerprint": fp.key, "state": "live", "reason": "commissioned"}]
    assert resolve(fp, promoted, "production").state == "live"
    for changed in (Fingerprint("stroke_ich", "ich-x", "1.1", "b" * 64, {"any": 0.9}, "ich"),
                    Fingerprint("stroke_ich", "ich-x", "1.0", "a" * 64, {"any": 0.8}, "ich")):
        now = resolve(changed, promoted, "production")
        assert now.state == "shadow" and "new model version or threshold" in now.reason
    assert resolve(fp, [], "production").state == "shadow"
    suspended = promoted + [{"id": 2, "fingerprint": "other", "state": "suspended", "reason": "scanner upgrade"}]
    assert resolve(fp, suspended, "production").state == "suspended"
