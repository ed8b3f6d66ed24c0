"""Studies written by ``radtriage synth``: one folder per study with ``truth.json``.

The main series (``truth["main_series_number"]``) is the one a task reads; its
label comes from the generator's truth.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pydicom

from radtriage.datasets import Example, age_band
from radtriage.imaging.series import load_series

KIND_OF_TASK = {"ich": "ct-head", "lvo": "cta-head", "nodule": "ct-chest", "bone_age": "xr-hand"}


def series_files(study: Path, series_number: int) -> list[Path]:
    """The DICOM files of one series in a study folder."""
    out = []
    for p in sorted(study.glob("*.dcm")):
        ds = pydicom.dcmread(p, stop_before_pixels=True, specific_tags=["SeriesNumber"])
        if int(ds.get("SeriesNumber", -1)) == series_number:
            out.append(p)
    return out


def label_of(task: str, truth: dict) -> dict:
    if task == "ich":
        return {"positive": bool(truth.get("present")), "subtypes": list(truth.get("subtypes", [])),
                "slice_labels": truth.get("slice_labels", {})}
    if task == "lvo":
        return {"positive": bool(truth.get("lvo")), "side": truth.get("side"), "segment": truth.get("segment")}
    if task == "nodule":
        return {"nodules": [{"centre_mm": n["centre_mm"], "diameter_mm": n["diameter_mm"], "type": n.get("type")}
                            for n in truth.get("nodules", [])]}
    return {"bone_age_months": truth["bone_age_months"], "sex": truth["sex"],
            "chronological_age_months": truth.get("chronological_age_months")}


def groups_of(truth: dict) -> dict[str, str]:
    g = {"sex": truth.get("patient_sex") or truth.get("sex") or "unknown"}
    if "age_years" in truth:
        g["age_band"] = age_band(truth["age_years"])
    elif "chronological_age_months" in truth:
        g["age_band"] = age_band(truth["chronological_age_months"] / 12)
    scanner = truth.get("model") or truth.get("scanner")
    if scanner:
        g["scanner"] = str(scanner)
    if truth.get("slice_thickness_mm") is not None:
        g["slice_thickness"] = f"{float(truth['slice_thickness_mm']):g} mm"
    return g


def examples(root: Path, task: str) -> Iterator[Example]:
    """Each study folder under ``root`` of the task's kind, in name order."""
    for truth_path in sorted(Path(root).glob("*/truth.json")):
        truth = json.loads(truth_path.read_text())
        if truth.get("kind") != KIND_OF_TASK[task]:
            continue
        study = truth_path.parent
        number = int(truth["main_series_number"])
        yield Example(
            id=study.name,
            task=task,
            label=label_of(task, truth),
            load=lambda study=study, number=number: load_series(series_files(study, number)),
            groups=groups_of(truth),
        )
