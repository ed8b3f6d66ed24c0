"""What a draft says about each AI finding, as fields for the templates: taken from the stored result (the
`Finding` that `radtriage.inference.findings` wrote, whose ``text`` is what the worklist shows, its
measurements and the result's labels), never computed again, so a draft and the worklist cannot disagree.

Numbers are formatted as the finding's text formats them (a volume ``:g``, a bone age difference ``:+.0f``,
a z-score ``:+.1f``); a nodule's Lung-RADS category is read from its text (`scan_lung_rads`), the scan's
from the nodules left in the draft (`overall_lung_rads`); what a category implies for follow-up is
`FOLLOW_UP` (Lung-RADS v2022 management). A finding the reader removed is not in the context.
"""

from __future__ import annotations

from collections.abc import Callable, Container, Mapping
from typing import Any

from radtriage.domain import Finding, TaskResult
from radtriage.inference.findings import scan_lung_rads
from radtriage.inference.reference import overall_lung_rads

# Lung-RADS v2022 management by category (the words are each language's, in its nodule template)
FOLLOW_UP = {"1": "ldct_12m", "2": "ldct_12m", "3": "ldct_6m", "4A": "ldct_3m", "4B": "diagnostic",
             "4X": "diagnostic"}
NODULE_TYPE = "solid"  # the nodule ops do not output a type; Lung-RADS is then read as for a solid nodule


def _g(v: Any) -> str | None:
    return None if v is None else f"{float(v):g}"


def _base(i: int, f: Finding) -> dict[str, Any]:
    return {"index": i, "code": f.code, "text": f.text, "probability": f.probability,
            "measurements": dict(f.measurements)}


def _ich(r: TaskResult, i: int, f: Finding) -> dict[str, Any]:
    m = f.measurements
    return {"subtype": r.labels.get("subtype", ""), "volume_ml": _g(m.get("estimated_volume_ml")),
            "key_slice": int(m["key_slice"]) + 1 if "key_slice" in m else None,  # counted from 1, as readers do
            "slices": int(m.get("slices_above_threshold", 0))}


def _lvo(r: TaskResult, i: int, f: Finding) -> dict[str, Any]:
    return {"side": r.labels.get("side", ""), "segment": r.labels.get("segment", "")}


def _nodule(r: TaskResult, i: int, f: Finding) -> dict[str, Any]:
    m, category = f.measurements, scan_lung_rads([f])
    return {"type": NODULE_TYPE, "type_assumed": True, "longest_mm": _g(m.get("longest_diameter_mm")),
            "mean_mm": _g(m.get("mean_diameter_mm")), "volume_mm3": _g(m.get("volume_mm3")) if m.get("volume_mm3")
            else None, "category": category, "follow_up": FOLLOW_UP[category]}


def _bone_age(r: TaskResult, i: int, f: Finding) -> dict[str, Any]:
    m = f.measurements
    known = "chronological_age_months" in m
    flag = None if not known else "advanced" if "(advanced)" in f.text else "delayed" if "(delayed)" in f.text \
        else "normal"  # the worklist's own verdict, from its text
    return {"bone_age_months": f"{m['bone_age_months']:.0f}",
            "chronological_age_months": f"{m['chronological_age_months']:.0f}" if known else None,
            "difference_months": f"{m['difference_months']:+.0f}" if known else None,
            "z_score": f"{m['z_score']:+.1f}" if known else None, "flag": flag}


PER_TASK: dict[str, Callable[[TaskResult, int, Finding], dict[str, Any]]] = {
    "ich": _ich, "lvo": _lvo, "nodule": _nodule, "bone_age": _bone_age}


def task_context(r: TaskResult, meta: Mapping[str, Any], removed: Container[int] = ()) -> dict[str, Any]:
    """The fields of one result's task template: ``result`` and its ``findings`` (those not removed, series
    flags left out as in every export), and for nodules the scan's ``overall`` category."""
    extra = PER_TASK.get(r.task)
    findings = []
    for i, f in enumerate(r.findings):
        if f.code.startswith("series:") or i in removed:
            continue
        findings.append({**_base(i, f), **(extra(r, i, f) if extra else {}), "number": len(findings) + 1})
    out: dict[str, Any] = {
        "result": {"id": meta.get("id"), "task": r.task, "pipeline_id": meta.get("pipeline_id", ""),
                   "pipeline_title": meta.get("pipeline_title", ""), "positive": r.positive,
                   "labels": dict(r.labels), "scores": dict(r.scores), "model_id": r.model_id,
                   "model_version": r.model_version},
        "findings": findings}
    if r.task == "nodule":
        category = overall_lung_rads([f["category"] for f in findings])
        out["overall"] = {"category": category, "follow_up": FOLLOW_UP[category]}
    return out


def _date(d: Any) -> str | None:
    d = str(d or "")
    return f"{d[:4]}-{d[4:6]}-{d[6:8]}" if len(d) == 8 and d.isdigit() else (d or None)


def series_context(header: Mapping[str, Any]) -> dict[str, Any]:
    """Technique words from a series' header (DICOM keywords of the routing header)."""
    return {"number": header.get("SeriesNumber"), "modality": header.get("Modality") or "",
            "description": header.get("SeriesDescription") or None, "body_part": header.get("BodyPartExamined") or None,
            "thickness_mm": _g(header.get("SliceThickness")) if header.get("SliceThickness") else None,
            "kernel": header.get("ConvolutionKernel") or None, "kvp": _g(header.get("KVP")) if header.get("KVP") else None,
            "contrast": header.get("ContrastBolusAgent") or None, "manufacturer": header.get("Manufacturer") or None,
            "model": header.get("ManufacturerModelName") or None}


def study_context(study: Mapping[str, Any]) -> dict[str, Any]:
    return {"description": study.get("study_description") or None, "modality": study.get("modality") or "",
            "date": _date(study.get("study_date")), "accession": study.get("accession_number") or None}
