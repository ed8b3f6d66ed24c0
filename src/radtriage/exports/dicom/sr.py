"""The TID 1500 measurement report of one result (a Comprehensive 3D SR, built with highdicom).

One measurement group per finding (a tracking identifier and a tracking UID that stay the same across
revisions), the algorithm (TID 4019: model id, version, thresholds) on each group, the source series as
evidence. A negative result is one group saying the finding is absent. A correction is a new SR
whose Predecessor Documents Sequence names the SR it replaces; a withdrawal is an SR without
measurements, partial and unverified, saying in a text item that the result must not be used.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import highdicom as hd
import numpy as np
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.uid import Comprehensive3DSRStorage

from radtriage.domain.case import Finding
from radtriage.exports.dicom import codes as c
from radtriage.exports.dicom.source import Source
from radtriage.exports.dicom.uids import Uids
from radtriage.exports.model import CORRECTED, WITHDRAWN, ExportedResult
from radtriage.imaging.keyimage import DISCLAIMER

MANUFACTURER = "radtriage"
WITHDRAWN_TEXT = "AI result WITHDRAWN: this result must not be used"
Group = hd.sr.MeasurementsAndQualitativeEvaluations | hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations


def clinical(findings: tuple[Finding, ...]) -> list[Finding]:
    """The findings an export carries (series flags such as 'series: motion' stay in radtriage)."""
    return [f for f in findings if not f.code.startswith("series:")]


def algorithm(exported: ExportedResult) -> hd.sr.AlgorithmIdentification:
    thresholds = exported.thresholds or {k: v for k, v in exported.result.scores.items() if k == "threshold"}
    return hd.sr.AlgorithmIdentification(
        name=exported.result.model_id, version=exported.result.model_version,
        parameters=[f"{k}={v:g}" for k, v in sorted(thresholds.items())] or None,
        family=codes.DCM.ArtificialIntelligence, manufacturer=MANUFACTURER)


def _measure(name, value: float, unit, **kw) -> hd.sr.Measurement:
    return hd.sr.Measurement(name=name, value=float(value), unit=unit, **kw)


def _probability(p: float | None) -> list[hd.sr.Measurement]:
    return [] if p is None else [_measure(c.PROBABILITY, p, c.UNIT_NONE)]


class _Groups:
    """The measurement groups of one result, task by task."""

    def __init__(self, exported: ExportedResult, source: Source, uids: Uids) -> None:
        self.e, self.source, self.uids = exported, source, uids
        self.algo = algorithm(exported)

    def tracking(self, i: int | None, label: str) -> hd.sr.TrackingIdentifier:
        """Finding ``i``'s tracking identifier ("nodule 2: Lung-RADS 4A, 9 mm"); None: the study's ("nodule: ...")."""
        name = self.e.task if i is None else f"{self.e.task} {i + 1}"
        return hd.sr.TrackingIdentifier(uid=self.uids.tracking(i), identifier=f"{name}: {label}"[:64])

    def group(self, i: int | None, label: str, **kw) -> hd.sr.MeasurementsAndQualitativeEvaluations:
        return hd.sr.MeasurementsAndQualitativeEvaluations(tracking_identifier=self.tracking(i, label),
                                                           algorithm_id=self.algo, **kw)

    def build(self) -> list[Group]:
        found = clinical(self.e.result.findings)
        per_task: dict[str, Callable[[list[Finding]], list[Group]]] = {
            "ich": self.ich, "lvo": self.lvo, "nodule": self.nodule, "bone_age": self.bone_age}
        if self.e.task not in per_task:
            raise ValueError(f"no DICOM SR mapping for task {self.e.task!r}")
        return per_task[self.e.task](found)

    def _source_image(self, index: float | None) -> list[hd.sr.SourceImageForMeasurementGroup]:
        ref = self.source.slice_reference(int(index)) if index is not None else None
        if ref is None:
            return []
        return [hd.sr.SourceImageForMeasurementGroup(ref.SOPClassUID, ref.SOPInstanceUID)]

    def ich(self, found: list[Finding]) -> list[Group]:
        if not found:
            return [self.group(None, "no haemorrhage", finding_type=c.ICH,
                               qualitative_evaluations=[hd.sr.QualitativeEvaluation(c.ICH, c.ABSENT)],
                               measurements=_probability(self.e.result.scores.get("ich")))]
        out: list[Group] = []
        for i, f in enumerate(found):
            subtype = self.e.result.labels.get("subtype") or _word_after(f.text, "ICH - ")
            site, modifier = c.ICH_SITES.get(subtype, (codes.SCT.Intracranial, None))
            m = f.measurements
            volume = [_measure(c.VOLUME, m["estimated_volume_ml"], c.UNIT_ML)] if "estimated_volume_ml" in m else []
            out.append(self.group(
                i, f.text, finding_type=c.ICH,
                finding_sites=[hd.sr.FindingSite(site, topographical_modifier=modifier)],
                qualitative_evaluations=[hd.sr.QualitativeEvaluation(c.ICH, c.PRESENT)],
                measurements=volume + _probability(f.probability),
                source_images=self._source_image(m.get("key_slice"))))
        return out

    def lvo(self, found: list[Finding]) -> list[Group]:
        if not found:
            return [self.group(None, "no occlusion", finding_type=c.LVO,
                               qualitative_evaluations=[hd.sr.QualitativeEvaluation(c.LVO, c.ABSENT)],
                               measurements=_probability(self.e.result.scores.get("lvo")))]
        labels = self.e.result.labels
        side, segment = c.SIDES.get(labels.get("side", "")), c.LVO_SITES.get(labels.get("segment", ""))
        sites = [hd.sr.FindingSite(segment, laterality=side)] if segment is not None else []
        return [self.group(i, f.text, finding_type=c.LVO, finding_sites=sites,
                           qualitative_evaluations=[hd.sr.QualitativeEvaluation(c.LVO, c.PRESENT)],
                           measurements=_probability(f.probability)) for i, f in enumerate(found)]

    def nodule(self, found: list[Finding]) -> list[Group]:
        lung = [hd.sr.FindingSite(codes.SCT.Lung)]
        frame_of_reference = self.source.header.get("FrameOfReferenceUID")
        out: list[Group] = []
        for i, f in enumerate(found):
            m = f.measurements
            region = None
            if frame_of_reference and {"x_mm", "y_mm", "z_mm"} <= m.keys():
                region = hd.sr.ImageRegion3D(hd.sr.GraphicTypeValues3D.POINT,
                                             np.array([[m["x_mm"], m["y_mm"], m["z_mm"]]]), frame_of_reference)
            values = [_measure(c.LONG_AXIS, m["longest_diameter_mm"], c.UNIT_MM)] if "longest_diameter_mm" in m else []
            if "mean_diameter_mm" in m:
                values.append(_measure(c.DIAMETER, m["mean_diameter_mm"], c.UNIT_MM, derivation=c.MEAN))
            if m.get("volume_mm3"):
                values.append(_measure(c.VOLUME, m["volume_mm3"], c.UNIT_MM3))
            category = _word_after(f.text, "Lung-RADS ")
            evaluations = [hd.sr.QualitativeEvaluation(c.NODULE, c.PRESENT)]
            if category in c.LUNG_RADS:
                evaluations.append(hd.sr.QualitativeEvaluation(c.LUNG_RADS_ASSESSMENT, c.lung_rads_category(category)))
            out.append(hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(
                tracking_identifier=self.tracking(i, f.text), referenced_region=region, finding_type=c.NODULE,
                finding_sites=lung, algorithm_id=self.algo, measurements=values + _probability(f.probability),
                qualitative_evaluations=evaluations))
        overall = self.e.result.labels.get("lung_rads", "1")
        evaluations = [hd.sr.QualitativeEvaluation(c.NODULE, c.PRESENT if found else c.ABSENT)]
        if overall in c.LUNG_RADS:
            evaluations.append(hd.sr.QualitativeEvaluation(c.LUNG_RADS_ASSESSMENT, c.lung_rads_category(overall)))
        out.append(self.group(None, f"study Lung-RADS {overall}", finding_sites=lung,
                              qualitative_evaluations=evaluations))
        return out

    def bone_age(self, found: list[Finding]) -> list[Group]:
        out: list[Group] = []
        for i, f in enumerate(found):
            m = f.measurements
            values = [_measure(name, m[key], unit) for key, name, unit in (
                ("bone_age_months", c.BONE_AGE, c.UNIT_MONTH),
                ("chronological_age_months", c.SUBJECT_AGE, c.UNIT_MONTH),
                ("difference_months", c.AGE_DIFFERENCE, c.UNIT_MONTH),
                ("z_score", c.Z_SCORE, c.UNIT_NONE)) if key in m]
            out.append(self.group(i, f.text, finding_sites=[hd.sr.FindingSite(c.HAND_BONES)], measurements=values,
                                  source_images=self._source_image(0)))
        return out


def _word_after(text: str, prefix: str) -> str:
    found = re.search(re.escape(prefix) + r"([\w-]+)", text)
    return found.group(1) if found else ""


def device_context(exported: ExportedResult, uids: Uids) -> hd.sr.ObserverContext:
    """radtriage's pipeline as the observer (a device) of an SR or a KOS."""
    device = hd.sr.DeviceObserverIdentifyingAttributes(
        uid=uids.device(), name=f"radtriage {exported.pipeline_id}"[:64], manufacturer_name=MANUFACTURER,
        model_name=exported.result.model_id[:64])
    return hd.sr.ObserverContext(observer_type=codes.DCM.Device, observer_identifying_attributes=device)


def previous_sr(exported: ExportedResult, uids: Uids) -> Dataset | None:
    """The SR a correction or withdrawal replaces: this result's previous revision, or the result it
    supersedes (``replaces``; its revision from ``notes['replaces_revision']``, 0 when not given)."""
    if exported.status not in (CORRECTED, WITHDRAWN):
        return None
    if exported.revision > 0:
        result_id, revision = exported.result_id, exported.revision - 1
    elif exported.replaces is not None:
        result_id, revision = exported.replaces, int(exported.notes.get("replaces_revision", 0))
    else:
        return None
    ds = Dataset()
    ds.StudyInstanceUID = exported.study_uid
    ds.SeriesInstanceUID = uids.series("sr", result_id)
    ds.SOPClassUID = Comprehensive3DSRStorage
    ds.SOPInstanceUID = uids.sop("sr", revision, result_id)
    return ds


def build_sr(exported: ExportedResult, source: Source, uids: Uids) -> hd.sr.Comprehensive3DSR:
    withdrawn = exported.status == WITHDRAWN
    builder = _Groups(exported, source, uids)
    groups = [builder.group(None, "AI result WITHDRAWN")] if withdrawn else builder.build()
    modality = source.header.get("Modality", exported.modality or "")
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(observer_device_context=device_context(exported, uids)),
        procedure_reported=c.PROCEDURES.get(modality, c.PROCEDURE_XR),
        imaging_measurements=groups, title=codes.DCM.ImagingMeasurementReport)
    if withdrawn:
        reason = exported.notes.get("reason")
        report[0].ContentSequence.append(hd.sr.TextContentItem(
            name=c.COMMENT, value=(WITHDRAWN_TEXT + (f" ({reason})" if reason else ""))[:1024],
            relationship_type=hd.sr.RelationshipTypeValues.CONTAINS))
    previous = previous_sr(exported, uids)
    sr = hd.sr.Comprehensive3DSR(
        evidence=source.references, content=report[0], series_instance_uid=uids.series("sr"),
        series_number=uids.series_number("sr"), sop_instance_uid=uids.sop("sr"),
        instance_number=exported.revision + 1, manufacturer=MANUFACTURER, is_complete=not withdrawn,
        is_final=False, is_verified=False, previous_versions=[previous] if previous is not None else None)
    if withdrawn:
        sr.CompletionFlagDescription = WITHDRAWN_TEXT
    sr.SeriesDescription = series_description(exported, "SR")
    return sr


def series_description(exported: ExportedResult, what: str) -> str:
    state = {WITHDRAWN: " WITHDRAWN - do not use", CORRECTED: " (corrected)"}.get(exported.status, "")
    return f"{DISCLAIMER}: {exported.pipeline_title} {what}{state}"[:64]
