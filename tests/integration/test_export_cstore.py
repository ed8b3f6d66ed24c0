"""C-STORE of result objects to real peers: Orthanc (takes everything) and a dcmtk storescp that refuses SEG
(the next best, key images + KOS, goes instead, and the note says so); a resend stores nothing twice; a
destination that is down is a retryable failure."""

from __future__ import annotations

import io
import json
import urllib.request
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest
from pydicom.sr.codedict import codes

from radtriage.config.exports import DicomDestination
from radtriage.exports.send_dicom import SEG_STORAGE, store
from radtriage.outbox import SendError
from tests.helpers import free_port, make_ct_series, start_orthanc, start_storescp, stop_process

pytestmark = [pytest.mark.dcmtk]


@pytest.fixture(scope="module")
def objects(tmp_path_factory, ct_slice_path) -> dict[str, pydicom.Dataset]:
    """A SEG on three CT slices and a Secondary Capture from the first, as the exports make them."""
    folder = tmp_path_factory.mktemp("ct")
    sources = [pydicom.dcmread(p) for p in make_ct_series(folder, 3, ct_slice_path)]
    rows, cols = sources[0].Rows, sources[0].Columns
    mask = np.zeros((3, rows, cols), dtype=bool)
    mask[1, rows // 3: rows // 2, cols // 3: cols // 2] = True
    algorithm = hd.AlgorithmIdentificationSequence(name="test", version="1",
                                                   family=codes.cid7162.ArtificialIntelligence)
    segment = hd.seg.SegmentDescription(
        segment_number=1, segment_label="nodule", segmented_property_category=codes.SCT.MorphologicallyAbnormalStructure,
        segmented_property_type=codes.SCT.Nodule, algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
        algorithm_identification=algorithm)
    seg = hd.seg.Segmentation(source_images=sources, pixel_array=mask,
                              segmentation_type=hd.seg.SegmentationTypeValues.BINARY, segment_descriptions=[segment],
                              series_instance_uid=hd.UID(), series_number=90, sop_instance_uid=hd.UID(),
                              instance_number=1, manufacturer="radtriage", manufacturer_model_name="test",
                              software_versions="0", device_serial_number="0")
    sc = hd.sc.SCImage.from_ref_dataset(ref_dataset=sources[0], pixel_array=np.full((64, 64), 128, np.uint8),
                                        photometric_interpretation="MONOCHROME2", bits_allocated=8,
                                        coordinate_system="PATIENT", patient_orientation=("L", "P"),
                                        series_instance_uid=hd.UID(), series_number=91,
                                        sop_instance_uid=hd.UID(), instance_number=1, manufacturer="radtriage")
    return {"seg": seg, "sc": sc}


def _orthanc_instances(http_port: int) -> list[str]:
    with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/instances", timeout=10) as r:
        return json.load(r)


def _orthanc_uid(http_port: int, orthanc_id: str) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/instances/{orthanc_id}/simplified-tags",
                                timeout=10) as r:
        return json.load(r)["SOPInstanceUID"]


def test_orthanc_stores_seg_and_sc_once_even_when_sent_twice(tmp_path: Path, objects) -> None:
    proc, dicom_port, http_port = start_orthanc(tmp_path)
    try:
        dest = DicomDestination(name="pacs", ae_title="ORTHANC", host="127.0.0.1", port=dicom_port)
        first = store(dest, "RADTRIAGE", [objects["seg"], objects["sc"]])
        again = store(dest, "RADTRIAGE", [objects["seg"], objects["sc"]])  # a resend after a lost answer
        assert first.stored == again.stored == [str(objects["seg"].SOPInstanceUID), str(objects["sc"].SOPInstanceUID)]
        assert first.notes == [] and first.refused_classes == []
        held = _orthanc_instances(http_port)
        assert sorted(_orthanc_uid(http_port, i) for i in held) == sorted(first.stored)  # two objects, not four
        seg_id = next(i for i in held if _orthanc_uid(http_port, i) == str(objects["seg"].SOPInstanceUID))
        with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/instances/{seg_id}/file", timeout=10) as r:
            back = hd.seg.segread(io.BytesIO(r.read()))
        assert back.number_of_segments == 1
        assert np.array_equal(back.pixel_array, objects["seg"].pixel_array)  # the mask Orthanc holds is the one sent
    finally:
        stop_process(proc)


def test_a_destination_refusing_seg_gets_the_key_images_instead(tmp_path: Path, objects) -> None:
    proc, port = start_storescp(tmp_path, ["SecondaryCaptureImageStorage", "KeyObjectSelectionDocumentStorage",
                                           "Comprehensive3DSRStorage"])
    try:
        dest = DicomDestination(name="old-pacs", ae_title="STORESCP", host="127.0.0.1", port=port,
                                objects=["sr", "seg"])
        done = store(dest, "RADTRIAGE", [objects["seg"]], fallback=[objects["sc"]])
        assert SEG_STORAGE in done.refused_classes
        assert done.stored == [str(objects["sc"].SOPInstanceUID)]
        assert any("does not accept SEG" in n and "key images" in n for n in done.notes)
        received = [pydicom.dcmread(p) for p in (tmp_path / "in").iterdir()]
        assert [str(ds.SOPInstanceUID) for ds in received] == [str(objects["sc"].SOPInstanceUID)]
    finally:
        stop_process(proc)


def test_nothing_accepted_is_permanent_and_a_dead_destination_is_retried(tmp_path: Path, objects) -> None:
    proc, port = start_storescp(tmp_path, ["CTImageStorage"])
    try:
        dest = DicomDestination(name="ct-only", ae_title="STORESCP", host="127.0.0.1", port=port)
        with pytest.raises(SendError) as refused:
            store(dest, "RADTRIAGE", [objects["sc"]])
        assert refused.value.permanent
    finally:
        stop_process(proc)
    down = DicomDestination(name="down", ae_title="NOBODY", host="127.0.0.1", port=free_port(), timeout_s=3)
    with pytest.raises(SendError) as failed:
        store(down, "RADTRIAGE", [objects["sc"]])
    assert not failed.value.permanent
