"""Evidence for a promotion: the ``metrics.json`` that `radtriage validate` writes, checked against the
pipeline's floors (its ``commissioning:`` section, else `DEFAULT_FLOORS` for its task).

`shortfalls` names each way the evidence falls short, so a refusal can say what is missing: too few
cases or positives, a 95% CI bound past its floor, a metric not measured, or evidence about another
model, model version or operating threshold than the one the pipeline runs (the last two may be
carried over by an explicit choice of the admin).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from radtriage.governance.state import Fingerprint
from radtriage.pipelines import Commissioning, PipelineSpec

THRESHOLD_KEYS = {"ich": "any", "lvo": "lvo", "nodule": "nodule"}  # as `radtriage.validation.run` reads them
DEFAULT_FLOORS: dict[str, Commissioning] = {
    "ich": Commissioning(min_cases=200, min_positive=30, sensitivity_lower=0.85, specificity_lower=0.80,
                         reason="radtriage's default for a haemorrhage pipeline (see pipelines/stroke_ich.yaml)"),
    "lvo": Commissioning(min_cases=200, min_positive=30, sensitivity_lower=0.85, specificity_lower=0.75,
                         reason="radtriage's default for an occlusion pipeline (see pipelines/stroke_lvo.yaml)"),
    "nodule": Commissioning(min_cases=100, min_positive=50, sensitivity_lower=0.75, fp_per_scan_upper=2.0,
                            reason="radtriage's default for a nodule pipeline (see pipelines/lung_nodule.yaml)"),
    "bone_age": Commissioning(min_cases=100, mae_upper_months=9.0,
                              reason="radtriage's default for a bone-age pipeline (see pipelines/bone_age.yaml)"),
}

BOUNDS = (("sensitivity_lower", "sensitivity 95% CI lower bound", True),
          ("specificity_lower", "specificity 95% CI lower bound", True),
          ("mae_upper_months", "MAE 95% CI upper bound (months)", False),
          ("fp_per_scan_upper", "false positives per scan 95% CI upper bound", False))
"""(floor, its words, whether the measured bound must be at least the floor; else at most)."""


def floors_for(spec: PipelineSpec) -> Commissioning:
    return spec.commissioning or DEFAULT_FLOORS[spec.task]


def _bound(metrics: Mapping[str, Any], key: str, side: int) -> float | None:
    """The lower (side 0) or upper (side 1) 95% CI bound of ``metrics[key]``, or None when not measured."""
    m = metrics.get(key)
    try:
        v = float(m["ci95"][side])  # type: ignore[index]
    except (TypeError, KeyError, IndexError, ValueError):
        return None
    return v if math.isfinite(v) else None


def measured(task: str, doc: Mapping[str, Any]) -> dict[str, float | int | None]:
    """What the floors are compared with, read from a metrics.json document."""
    m = doc.get("metrics") or {}
    binary = task in ("ich", "lvo")
    sens = "sensitivity" if binary else "sensitivity_at_threshold"
    return {"cases": m.get("n", doc.get("n")),
            "positive": m.get("positives") if binary else m.get("n_nodules") if task == "nodule" else None,
            "sensitivity_lower": _bound(m, sens, 0), "specificity_lower": _bound(m, "specificity", 0),
            "mae_upper_months": _bound(m, "mae", 1), "fp_per_scan_upper": _bound(m, "fp_per_scan_at_threshold", 1)}


def _identity_shortfalls(fp: Fingerprint, doc: Mapping[str, Any], carry_over: bool) -> list[str]:
    model = doc.get("model") or {}
    out = []
    if doc.get("task") != fp.task:
        out.append(f"the evidence is for task {doc.get('task')!r}, this pipeline's is {fp.task!r}")
    if model.get("id") != fp.model_id:
        out.append(f"the evidence is for model {model.get('id')!r}, this pipeline runs {fp.model_id!r}")
    elif not carry_over and (model.get("version"), model.get("sha256")) != (fp.model_version, fp.model_sha256):
        out.append(f"the evidence is for model version {model.get('version')} (sha256 {str(model.get('sha256'))[:12]}), "
                   f"this pipeline runs {fp.model_version} (sha256 {fp.model_sha256[:12]}): validate it again, or "
                   "carry the evidence over explicitly")
    key = THRESHOLD_KEYS.get(fp.task)
    if key is not None and key in fp.thresholds and not carry_over:
        given = doc.get("threshold")
        if given is None or abs(float(given) - fp.thresholds[key]) > 1e-6:
            out.append(f"the evidence was measured at threshold {given}, this pipeline runs at "
                       f"{fp.thresholds[key]:g}: validate at the site's threshold, or carry the evidence over explicitly")
    return out


def shortfalls(spec: PipelineSpec, fp: Fingerprint, doc: Mapping[str, Any], carry_over: bool = False) -> list[str]:
    """Each way ``doc`` (a metrics.json) falls short of the pipeline's floors; empty when it meets them all."""
    floors = floors_for(spec)
    out = _identity_shortfalls(fp, doc, carry_over)
    got = measured(fp.task, doc)
    cases = got["cases"]
    if cases is None or cases < floors.min_cases:
        out.append(f"{cases or 0} cases, at least {floors.min_cases} needed")
    if floors.min_positive is not None and (got["positive"] or 0) < floors.min_positive:
        what = "nodules" if fp.task == "nodule" else "positive cases"
        out.append(f"{got['positive'] or 0} {what}, at least {floors.min_positive} needed")
    for name, words, at_least in BOUNDS:
        floor = getattr(floors, name)
        if floor is None:
            continue
        value = got[name]
        if value is None:
            out.append(f"{words} not measured in the evidence")
        elif (value < floor) if at_least else (value > floor):
            out.append(f"{words} {value:.3f}, {'at least' if at_least else 'at most'} {floor:g} needed")
    return out
