"""A binary SEG of the regions a result gives, on the source grid, one segment per finding.

A nodule is a sphere of its mean diameter around its centre (the result gives a centre and diameters,
not a mask). A finding whose measurements carry a voxel box (``box_z0``/``box_z1``, ``box_y0``/``box_y1``,
``box_x0``/``box_x1``: [start, stop) in the volume's slice order) is that box (ICH when its op gives
one). No region, no SEG. Each segment's tracking UID is its SR measurement group's.
"""

from __future__ import annotations

import highdicom as hd
import numpy as np
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes

from radtriage.domain.case import Finding
from radtriage.exports.dicom.source import Source, slice_normal
from radtriage.exports.dicom.sr import MANUFACTURER, clinical, series_description
from radtriage.exports.dicom.uids import Uids
from radtriage.exports.model import WITHDRAWN, ExportedResult

BOX = ("box_z0", "box_z1", "box_y0", "box_y1", "box_x0", "box_x1")
PROPERTY_TYPES = {"nodule": codes.SCT.Nodule, "ich": codes.SCT.Hemorrhage}
REGIONS = {"nodule": codes.SCT.Lung, "ich": codes.SCT.Brain}


def sphere(slices: list[Dataset], centre_lps: np.ndarray, radius_mm: float) -> np.ndarray:
    """A ball on the grid of ``slices`` (z, y, x) from its centre in LPS mm, slice by slice."""
    first = slices[0]
    iop = np.asarray(first.ImageOrientationPatient, float)
    row_dir, col_dir, normal = iop[:3], iop[3:], slice_normal(first)
    dy, dx = (float(v) for v in first.PixelSpacing)
    rows, cols = int(first.Rows), int(first.Columns)
    yy, xx = np.mgrid[0:rows, 0:cols]
    mask = np.zeros((len(slices), rows, cols), bool)
    for k, ds in enumerate(slices):
        rel = centre_lps - np.asarray(ds.ImagePositionPatient, float)
        dz = float(np.dot(rel, normal))
        if abs(dz) > radius_mm:
            continue
        u, v = float(np.dot(rel, row_dir)), float(np.dot(rel, col_dir))  # mm along the row and down the column
        mask[k] = (xx * dx - u) ** 2 + (yy * dy - v) ** 2 <= radius_mm ** 2 - dz ** 2
    return mask


def region(f: Finding, slices: list[Dataset]) -> np.ndarray | None:
    m = f.measurements
    first = slices[0]
    shape = (len(slices), int(first.Rows), int(first.Columns))
    if all(k in m for k in BOX):
        mask = np.zeros(shape, bool)
        z0, z1, y0, y1, x0, x1 = (int(round(m[k])) for k in BOX)
        mask[max(z0, 0):z1, max(y0, 0):y1, max(x0, 0):x1] = True
        return mask
    if {"x_mm", "y_mm", "z_mm"} <= m.keys():
        diameter = m.get("mean_diameter_mm") or m.get("longest_diameter_mm")
        if diameter:
            return sphere(slices, np.array([m["x_mm"], m["y_mm"], m["z_mm"]], float), diameter / 2)
    return None


def build_seg(exported: ExportedResult, source: Source, uids: Uids) -> hd.seg.Segmentation | None:
    if exported.status == WITHDRAWN or exported.task not in PROPERTY_TYPES:
        return None
    found = [(i, f) for i, f in enumerate(clinical(exported.result.findings))
             if set(BOX) <= f.measurements.keys() or {"x_mm", "y_mm", "z_mm"} <= f.measurements.keys()]
    if not found:
        return None
    slices = source.slices
    if any("ImagePositionPatient" not in s or "ImageOrientationPatient" not in s for s in slices):
        return None
    masks, descriptions = [], []
    algo = hd.AlgorithmIdentificationSequence(
        name=exported.result.model_id, family=codes.DCM.ArtificialIntelligence,
        version=exported.result.model_version, source=MANUFACTURER,
        parameters={k: f"{v:g}" for k, v in sorted(exported.thresholds.items())} or None)
    for i, f in found:
        mask = region(f, slices)
        if mask is None or not mask.any():
            continue
        masks.append(mask)
        descriptions.append(hd.seg.SegmentDescription(
            segment_number=len(masks), segment_label=f"{exported.task} {i + 1}"[:64],
            segmented_property_category=codes.SCT.MorphologicallyAbnormalStructure,
            segmented_property_type=PROPERTY_TYPES[exported.task], algorithm_type="AUTOMATIC",
            algorithm_identification=algo, tracking_uid=uids.tracking(i),
            tracking_id=f"{exported.task} {i + 1}: {f.text}"[:64], anatomic_regions=[REGIONS[exported.task]]))
    if not masks:
        return None
    seg = hd.seg.Segmentation(
        source_images=slices, pixel_array=np.stack(masks, axis=-1).astype(np.uint8), segmentation_type="BINARY",
        segment_descriptions=descriptions, series_instance_uid=uids.series("seg"),
        series_number=uids.series_number("seg"), sop_instance_uid=uids.sop("seg"),
        instance_number=exported.revision + 1, manufacturer=MANUFACTURER,
        manufacturer_model_name=exported.result.model_id[:64], software_versions=exported.result.model_version,
        device_serial_number=exported.pipeline_id[:64], content_label="AI_RESULT",
        content_description="AI result - not for diagnosis")
    seg.SeriesDescription = series_description(exported, "SEG")
    return seg
