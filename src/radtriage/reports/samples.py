"""Sample data every template is rendered against at start-up (and in the tests): each shipped task positive
and negative (a bone age with and without a chronological age), and a plain finding for a task a site adds."""

from __future__ import annotations

from typing import Any

from radtriage.domain import Finding, TaskResult
from radtriage.reports.facts import series_context, study_context, task_context


def _result(task: str, positive: bool, labels: dict[str, str], *findings: Finding) -> TaskResult:
    return TaskResult(task=task, model_id=f"{task}-reference", model_version="1.0.0", pipeline_version="1",
                      positive=positive, labels=labels, findings=findings)


SAMPLES: dict[str, list[TaskResult]] = {
    "ich": [_result("ich", True, {"subtype": "intraparenchymal"}, Finding(
        code="ich", text="ICH - intraparenchymal, ~12.4 mL", probability=0.97,
        measurements={"estimated_volume_ml": 12.4, "key_slice": 14.0, "slices_above_threshold": 6.0})),
        _result("ich", False, {"subtype": "none"})],
    "lvo": [_result("lvo", True, {"side": "left", "segment": "m1"},
                    Finding(code="lvo", text="LVO - left M1", probability=0.88)),
            _result("lvo", False, {"side": "right", "segment": "m2"})],
    "nodule": [_result("nodule", True, {"lung_rads": "4B"}, *(Finding(
        code="nodule", text=f"Lung-RADS {c}, {d:.0f} mm", probability=p,
        measurements={"longest_diameter_mm": d, "mean_diameter_mm": m, "volume_mm3": v, "x_mm": 1.0, "y_mm": 2.0,
                      "z_mm": 3.0}) for c, d, m, v, p in (("4B", 16.2, 15.4, 1900.5, 0.91), ("3", 7.5, 6.8, 160.0, 0.7),
                                                          ("2", 4.0, 3.6, 30.0, 0.6)))),
               _result("nodule", False, {"lung_rads": "1"})],
    "bone_age": [_result("bone_age", True, {"sex": "M"}, Finding(
        code="bone_age_flag", text="bone age +26 mo, z +2.4 (advanced)",
        measurements={"bone_age_months": 150.0, "chronological_age_months": 124.0, "difference_months": 26.0,
                      "z_score": 2.36})),
        _result("bone_age", False, {"sex": "F"}, Finding(
            code="bone_age", text="bone age 96 mo (chronological age unknown)", measurements={"bone_age_months": 96.0}))],
}

SAMPLE_HEADER = {"Modality": "CT", "SeriesNumber": 3, "SeriesDescription": "AXIAL 5mm", "BodyPartExamined": "HEAD",
                 "SliceThickness": 5.0, "ConvolutionKernel": "H30s", "KVP": 120.0, "ContrastBolusAgent": "",
                 "Manufacturer": "SIEMENS", "ManufacturerModelName": "SOMATOM"}


def task_contexts(task: str) -> list[dict[str, Any]]:
    results = SAMPLES.get(task) or [_result(task, True, {}, Finding(code=task, text=f"{task} finding",
                                                                    probability=0.9))]
    return [task_context(r, {"id": 1, "pipeline_id": task, "pipeline_title": f"{task} triage"}) for r in results]


def report_context() -> dict[str, Any]:
    return {"study": study_context({"study_description": "CT HEAD WO", "modality": "CT", "study_date": "20261207",
                                    "accession_number": "ACC-1"}),
            "series": [series_context(SAMPLE_HEADER), series_context({"Modality": "DX"})],
            "pipelines": [{"title": "Stroke ICH", "model_id": "ich-reference", "model_version": "1.0.0"}]}
