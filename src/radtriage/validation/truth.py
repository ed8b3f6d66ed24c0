"""A reader's truth in a task's own terms, and the (label, prediction, groups) of one stored case.

A commissioning reader (the silent trial, `radtriage.governance.reads`) or a site's truth CSV
(`radtriage.validation.site`) says what a study holds, per task:

- ``ich``: haemorrhage present or absent, with its subtypes;
- ``lvo``: occlusion present or absent, with its side (and segment when known);
- ``nodule``: each nodule the AI found confirmed (with its size as read) or rejected, and each one it
  missed added (with its centre and size);
- ``bone_age``: the bone age as read, in months.

`label_of` turns a truth (and, for nodules, the AI's findings it refers to) into the label dict of
`radtriage.datasets` that `radtriage.validation.evaluate` reads; `prediction_of` turns a stored
`TaskResult` (as the service records it) into the prediction dict it reads; `groups_of` gives a
case's subgroups from its series header. Validation of stored studies and the silent trial's
evidence both go through these three, so the same cases give the same numbers.

A nodule result keeps only the nodules at or above the operating threshold, so the FROC of stored
cases is the part of the curve above it; the operating point (sensitivity, false positives per
scan) is exact.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from radtriage.datasets import age_band

IchSubtype = Literal["epidural", "intraparenchymal", "intraventricular", "subarachnoid", "subdural"]
Side = Literal["left", "right"]
Segment = Literal["ica_t", "m1", "m2"]
Comment = Annotated[str, Field(max_length=2000)]


class TruthError(ValueError):
    """A truth that does not fit the result it is about (an unknown finding, a finding not read)."""


class _Truth(BaseModel):
    model_config = ConfigDict(extra="forbid")
    comment: Comment | None = None


class IchTruth(_Truth):
    task: Literal["ich"]
    present: bool
    subtypes: list[IchSubtype] = Field(default_factory=list, max_length=5)

    @model_validator(mode="after")
    def _subtypes_only_when_present(self) -> IchTruth:
        if self.subtypes and not self.present:
            raise ValueError("subtypes are given only when a haemorrhage is present")
        return self


class LvoTruth(_Truth):
    task: Literal["lvo"]
    present: bool
    side: Side | None = None
    segment: Segment | None = None

    @model_validator(mode="after")
    def _side_when_present(self) -> LvoTruth:
        if self.present and self.side is None:
            raise ValueError("an occlusion that is present needs its side (left or right)")
        if not self.present and (self.side or self.segment):
            raise ValueError("side and segment are given only when an occlusion is present")
        return self


Mm = Annotated[float, Field(gt=0, le=100)]


class NoduleRead(BaseModel):
    """One nodule: an AI finding confirmed or rejected (``finding``: its index among the result's nodule
    findings), or one the AI missed, added with its centre (LPS, mm)."""

    model_config = ConfigDict(extra="forbid")
    verdict: Literal["confirmed", "rejected", "added"]
    finding: Annotated[int, Field(ge=0, le=99)] | None = None
    diameter_mm: Mm | None = None
    centre_mm: Annotated[list[Annotated[float, Field(ge=-2000, le=2000)]], Field(min_length=3, max_length=3)] | None = None

    @model_validator(mode="after")
    def _complete(self) -> NoduleRead:
        if self.verdict == "added":
            if self.finding is not None or self.centre_mm is None or self.diameter_mm is None:
                raise ValueError("an added nodule has its centre_mm and diameter_mm, and no finding")
        elif self.finding is None:
            raise ValueError(f"a {self.verdict} nodule names the AI finding (its index)")
        elif self.verdict == "confirmed" and self.diameter_mm is None:
            raise ValueError("a confirmed nodule has its diameter_mm as read")
        return self


class NoduleTruth(_Truth):
    task: Literal["nodule"]
    nodules: list[NoduleRead] = Field(default_factory=list, max_length=100)


class BoneAgeTruth(_Truth):
    task: Literal["bone_age"]
    bone_age_months: Annotated[float, Field(ge=0, le=240)]


Truth = Annotated[IchTruth | LvoTruth | NoduleTruth | BoneAgeTruth, Field(discriminator="task")]
TRUTHS: dict[str, type[_Truth]] = {"ich": IchTruth, "lvo": LvoTruth, "nodule": NoduleTruth, "bone_age": BoneAgeTruth}


def _text(value: Any) -> str | None:
    return None if value in (None, "", "None") else str(value)


def nodule_findings(result: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [f for f in result.get("findings") or [] if f.get("code") == "nodule"]


def prediction_of(task: str, result: Mapping[str, Any]) -> dict[str, Any]:
    """The prediction dict of a stored result (``TaskResult.model_dump(mode="json")``)."""
    scores, labels = result.get("scores") or {}, result.get("labels") or {}
    if task == "ich":
        return {"score": float(scores["ich"]), "positive": bool(result["positive"]), "subtype": _text(labels.get("subtype"))}
    if task == "lvo":
        return {"score": float(scores["lvo"]), "positive": bool(result["positive"]),
                "side": _text(labels.get("side")), "segment": _text(labels.get("segment"))}
    if task == "nodule":
        return {"nodules": [{"centre_mm": [m["x_mm"], m["y_mm"], m["z_mm"]], "diameter_mm": m["longest_diameter_mm"],
                             "score": float(f["probability"])}
                            for f in nodule_findings(result) for m in (f["measurements"],)]}
    if task == "bone_age":
        return {"bone_age_months": float(scores["bone_age_months"])}
    raise ValueError(f"unknown task {task!r}")


def _nodule_label(truth: NoduleTruth, result: Mapping[str, Any]) -> dict[str, Any]:
    found = nodule_findings(result)
    named = [n.finding for n in truth.nodules if n.finding is not None]
    problems = [f"finding {i} does not exist (the result has {len(found)} nodules)" for i in named if i >= len(found)]
    problems += [f"finding {i} is read more than once" for i in sorted({i for i in named if named.count(i) > 1})]
    problems += [f"finding {i} is not read (confirm or reject it)" for i in range(len(found)) if i not in named]
    if problems:
        raise TruthError("; ".join(problems))
    out = []
    for n in truth.nodules:
        if n.verdict == "added":
            out.append({"centre_mm": list(n.centre_mm or []), "diameter_mm": n.diameter_mm, "type": None})
        elif n.verdict == "confirmed":
            m = found[n.finding]["measurements"]  # type: ignore[index]
            out.append({"centre_mm": [m["x_mm"], m["y_mm"], m["z_mm"]], "diameter_mm": n.diameter_mm, "type": None})
    return {"nodules": out}


def label_of(truth: _Truth, result: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The label dict (`radtriage.datasets`) of a truth; ``result`` is the stored result it is about (nodules
    refer to its findings; bone age takes the sex and age the model was given from it)."""
    result = result or {}
    if isinstance(truth, IchTruth):
        return {"positive": truth.present, "subtypes": list(truth.subtypes)}
    if isinstance(truth, LvoTruth):
        return {"positive": truth.present, "side": truth.side, "segment": truth.segment}
    if isinstance(truth, NoduleTruth):
        return _nodule_label(truth, result)
    if isinstance(truth, BoneAgeTruth):
        scores = result.get("scores") or {}
        return {"bone_age_months": truth.bone_age_months, "sex": (result.get("labels") or {}).get("sex"),
                "chronological_age_months": scores.get("chronological_age_months")}
    raise TypeError(f"not a truth: {type(truth).__name__}")


def _years(age: Any) -> float | None:
    """A DICOM Age String (``045Y``, ``018M``, ``020W``, ``010D``) in years."""
    text = str(age or "").strip().upper()
    per = {"Y": 1.0, "M": 12.0, "W": 52.18, "D": 365.25}
    if len(text) >= 2 and text[:-1].isdigit() and text[-1] in per:
        return int(text[:-1]) / per[text[-1]]
    return None


def _first(value: Any) -> Any:
    return value[0] if isinstance(value, Sequence) and not isinstance(value, str) and value else value


def groups_of(header: Mapping[str, Any], sex: str | None = None) -> dict[str, str]:
    """A stored series' subgroups: manufacturer, scanner model, kernel, slice thickness, sex, age band."""
    g = {"sex": str(sex or header.get("PatientSex") or "unknown"), "age_band": age_band(_years(header.get("PatientAge")))}
    for key, keyword in (("manufacturer", "Manufacturer"), ("scanner", "ManufacturerModelName"),
                         ("kernel", "ConvolutionKernel")):
        value = _text(_first(header.get(keyword)))
        if value:
            g[key] = value
    try:
        g["slice_thickness"] = f"{float(header['SliceThickness']):g} mm"
    except (KeyError, TypeError, ValueError):
        pass
    return g
