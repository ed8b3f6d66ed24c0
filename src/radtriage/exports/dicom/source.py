"""The source series as the DICOM builders need it: one header for patient and study, references for
every instance, and (for a segmentation or a slice index) the headers in the volume's slice order."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pydicom
from pydicom.dataset import Dataset

from radtriage.exports.model import ExportedResult, SourceInstance

# copied from the source header onto every object radtriage makes (patient, study, frame of reference)
PATIENT_STUDY = ("PatientName", "PatientID", "IssuerOfPatientID", "PatientBirthDate", "PatientSex",
                 "StudyInstanceUID", "StudyDate", "StudyTime", "StudyID", "AccessionNumber",
                 "ReferringPhysicianName", "StudyDescription", "SpecificCharacterSet")


@dataclass
class Source:
    """The source series of one exported result (reads its files lazily, headers only)."""

    exported: ExportedResult

    @cached_property
    def header(self) -> Dataset:
        """The first instance's header, with the result's patient and study filled where it lacks them."""
        if not self.exported.instances:
            raise ValueError(f"result {self.exported.result_id}: no source instances to reference")
        ds = pydicom.dcmread(self.exported.instances[0].path, stop_before_pixels=True)
        p, e = self.exported.patient, self.exported
        for keyword, value in (("PatientID", p.patient_id), ("PatientName", p.name), ("PatientBirthDate", p.birth_date),
                               ("PatientSex", p.sex), ("AccessionNumber", e.accession), ("StudyDate", e.study_date),
                               ("StudyTime", e.study_time), ("StudyInstanceUID", e.study_uid)):
            if not ds.get(keyword) and value:
                setattr(ds, keyword, value)
        for keyword in ("PatientID", "PatientName", "PatientBirthDate", "PatientSex", "AccessionNumber",
                        "StudyID", "StudyDate", "StudyTime", "ReferringPhysicianName"):
            if keyword not in ds:
                setattr(ds, keyword, None)  # type 2 attributes the builders copy
        return ds

    def reference(self, inst: SourceInstance) -> Dataset:
        """A data set standing for one source instance: its identifiers with the study's attributes."""
        ds = Dataset()
        for keyword in PATIENT_STUDY:
            if keyword in self.header:
                setattr(ds, keyword, self.header[keyword].value)
        ds.SeriesInstanceUID = self.exported.series_uid
        ds.SOPClassUID = inst.sop_class_uid
        ds.SOPInstanceUID = inst.sop_instance_uid
        ds.Modality = self.header.get("Modality", self.exported.modality or "OT")
        return ds

    @cached_property
    def references(self) -> list[Dataset]:
        return [self.reference(i) for i in self.exported.instances]

    @cached_property
    def slices(self) -> list[Dataset]:
        """Every source header (no pixels) in the order a `Volume` stacks them: along the slice normal."""
        headers = [pydicom.dcmread(i.path, stop_before_pixels=True) for i in self.exported.instances]
        if len(headers) < 2 or any("ImagePositionPatient" not in h for h in headers):
            return headers
        normal = slice_normal(headers[0])
        depth = [float(np.dot(np.asarray(h.ImagePositionPatient, float), normal)) for h in headers]
        order = np.lexsort(([int(h.get("InstanceNumber") or 0) for h in headers], depth))
        return [headers[i] for i in order]

    def slice_reference(self, index: int) -> Dataset | None:
        """The source instance shown as slice ``index`` of the volume (None when out of range)."""
        if not 0 <= index < len(self.exported.instances):
            return None
        if len(self.exported.instances) == 1:
            return self.references[0]
        uid = self.slices[index].SOPInstanceUID
        return next(r for r in self.references if r.SOPInstanceUID == uid)


def slice_normal(ds: Dataset) -> np.ndarray:
    iop = np.asarray(ds.ImageOrientationPatient, float)
    return np.cross(iop[:3], iop[3:])
