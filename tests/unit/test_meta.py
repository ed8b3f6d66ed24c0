import io

import pydicom
import pytest
from pydicom.data import get_testdata_file

from radtriage.ingest.meta import IMPLEMENTATION_CLASS_UID, part10_header
from radtriage.ingest.parse import InstanceRejected


@pytest.mark.parametrize("ae", ["CT1", "SCANNER_ODD", ""])
def test_header_reads_back_with_pydicom(ae):
    src = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    dataset = io.BytesIO()
    src.save_as(dataset, enforce_file_format=True)
    raw = dataset.getvalue()
    # the data set bytes after the original meta group
    fp = io.BytesIO(raw)
    pydicom.filereader.read_preamble(fp, False)
    pydicom.filereader._read_file_meta_info(fp)
    body = raw[fp.tell():]
    header = part10_header(src.SOPClassUID, src.SOPInstanceUID, "1.2.840.10008.1.2.1", ae)
    ds = pydicom.dcmread(io.BytesIO(header + body))
    m = ds.file_meta
    assert m.MediaStorageSOPClassUID == src.SOPClassUID
    assert m.MediaStorageSOPInstanceUID == src.SOPInstanceUID
    assert m.TransferSyntaxUID == "1.2.840.10008.1.2.1"
    assert m.ImplementationClassUID == IMPLEMENTATION_CLASS_UID
    assert m.FileMetaInformationVersion == b"\x00\x01"
    assert m.FileMetaInformationGroupLength == len(header) - 132 - 12
    assert m.get("SourceApplicationEntityTitle", "").strip() == ae
    assert ds.PatientName == src.PatientName and ds.pixel_array.shape == src.pixel_array.shape


def test_request_uids_are_checked():
    with pytest.raises(InstanceRejected):
        part10_header("1.2.3", "../../x", "1.2.840.10008.1.2", "A")
