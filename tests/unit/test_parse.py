import io

import pydicom
import pytest
from pydicom.data import get_testdata_file

from radtriage.ingest.parse import InstanceRejected, RejectReason, parse_part10, valid_uid


def _bytes(ds: pydicom.Dataset) -> bytes:
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


@pytest.fixture
def ct():
    return pydicom.dcmread(get_testdata_file("CT_small.dcm"))


def test_header_without_patient_identifiers(ct):
    _ds, hdr = parse_part10(_bytes(ct))
    assert hdr.sop_instance_uid == ct.SOPInstanceUID and hdr.study_uid == ct.StudyInstanceUID
    header = hdr.series_header()
    assert header["Modality"] == "CT"
    assert "PatientName" not in header and "PatientID" not in header
    assert hdr.study_fields()["patient_id"] == str(ct.PatientID)


@pytest.mark.parametrize("keyword,reason", [
    ("SOPInstanceUID", RejectReason.MISSING_UID),
    ("StudyInstanceUID", RejectReason.MISSING_UID),
    ("SeriesInstanceUID", RejectReason.MISSING_UID),
])
def test_missing_uids(ct, keyword, reason):
    delattr(ct, keyword)
    with pytest.raises(InstanceRejected) as e:
        parse_part10(_bytes(ct))
    assert e.value.reason is reason and e.value.reason.dimse_status == 0xC001


def test_uid_used_as_a_path_must_be_a_uid(ct):
    ct.SeriesInstanceUID = "../../etc"
    with pytest.raises(InstanceRejected) as e:
        parse_part10(_bytes(ct))
    assert e.value.reason is RejectReason.INVALID_UID
    assert not valid_uid("1." + "2" * 70) and not valid_uid("1..2") and valid_uid("1.2.840.10008")


def test_truncated_and_huge_declared_length(ct):
    data = _bytes(ct)
    with pytest.raises(InstanceRejected) as e:
        parse_part10(data[:-1000])
    assert e.value.reason is RejectReason.UNPARSEABLE
    # declare ~2 GB for the pixel data element
    i = data.rindex(b"\xe0\x7f\x10\x00")
    vr_len_at = i + 4 + 4  # explicit VR OW: tag, VR, 2 reserved, 4-byte length
    huge = data[:vr_len_at] + (0x7FFFFFF0).to_bytes(4, "little") + data[vr_len_at + 4:]
    with pytest.raises(InstanceRejected) as e:
        parse_part10(huge)
    assert e.value.reason is RejectReason.UNPARSEABLE


def test_garbage(ct):
    with pytest.raises(InstanceRejected) as e:
        parse_part10(b"\x00" * 128 + b"DICM" + b"\xff" * 300)
    assert e.value.reason.dimse_status == 0xC000
