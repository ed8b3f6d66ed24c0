"""dcmtk's storescu sends every usable file of pydicom-data (real CT, MR, CR,
US, RT, multi-frame; every transfer syntax a scanner sends): each is stored,
its data set equal to the original and its pixels decoding equal to pydicom's
decoding of the original. pynetdicom sends the same files raw and the stored
data set bytes are identical to the bytes sent."""

from __future__ import annotations

import io
from collections import defaultdict
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_files
from pydicom.uid import generate_uid
from pynetdicom import AllStoragePresentationContexts

from radtriage.db import instances
from radtriage.ingest.parse import InstanceRejected, parse_part10, valid_uid
from tests.helpers import storescu

pytestmark = [pytest.mark.dcmtk, pytest.mark.slow]

# storescu proposes one compressed transfer syntax per run: its option for each
STORESCU_OPTION = {
    "1.2.840.10008.1.2": "-xi",
    "1.2.840.10008.1.2.1": "-xe",
    "1.2.840.10008.1.2.2": "-xb",
    "1.2.840.10008.1.2.1.99": "-xd",
    "1.2.840.10008.1.2.4.50": "-xy",
    "1.2.840.10008.1.2.4.51": "-xx",
    "1.2.840.10008.1.2.4.70": "-xs",
    "1.2.840.10008.1.2.4.80": "-xt",
    "1.2.840.10008.1.2.4.81": "-xu",
    "1.2.840.10008.1.2.4.90": "-xv",
    "1.2.840.10008.1.2.4.91": "-xw",
    "1.2.840.10008.1.2.5": "-xr",
}
STORAGE_CLASSES = {cx.abstract_syntax for cx in AllStoragePresentationContexts}
REQUIRED_UIDS = ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID")


def _usable_files(out: Path) -> tuple[dict[str, list[Path]], list[Path], list[Path], dict[str, Path]]:
    """Test files by transfer syntax, those lacking UIDs, the truncated ones.

    pydicom-data holds the same image in several encodings under one SOP
    Instance UID; each copy gets its own UID (written back in its own
    transfer syntax) so that every file is a distinct instance.
    """
    by_ts: dict[str, list[Path]] = defaultdict(list)
    lacking: list[Path] = []
    broken: list[Path] = []
    seen: dict[str, Path] = {}
    out.mkdir(parents=True, exist_ok=True)
    for i, f in enumerate(sorted(get_testdata_files())):
        p = Path(f)
        try:
            ds = pydicom.dcmread(p)
            ts = str(ds.file_meta.TransferSyntaxUID)
            sop_class = str(ds.file_meta.MediaStorageSOPClassUID)
            _ = ds.PixelData if "PixelData" in ds else None  # whole file readable
        except Exception:  # noqa: BLE001 - not a well-formed Part 10 file
            continue
        if ts not in STORESCU_OPTION or sop_class not in STORAGE_CLASSES:
            continue
        if str(ds.get("SOPClassUID", "")) != sop_class:
            continue
        uids = [str(ds.get(k, "")).strip("\x00 ") for k in REQUIRED_UIDS]
        if not all(valid_uid(u) for u in uids):
            lacking.append(p)
            continue
        try:
            parse_part10(p.read_bytes())
        except InstanceRejected:
            broken.append(p)  # truncated test files: pydicom reads them silently
            continue
        uid = generate_uid()
        ds.SOPInstanceUID = uid
        ds.file_meta.MediaStorageSOPInstanceUID = uid
        copy = out / f"{i:03d}_{p.name}"
        try:
            ds.save_as(copy, enforce_file_format=True)
            pydicom.dcmread(copy)
        except Exception:  # noqa: BLE001 - pydicom cannot write this one back
            continue
        seen[uid] = copy
        by_ts[ts].append(copy)
    return by_ts, lacking, broken, seen


def _dataset_bytes(raw: bytes) -> bytes:
    """The data set bytes of a Part 10 stream (after the file meta group)."""
    fp = io.BytesIO(raw)
    pydicom.filereader.read_preamble(fp, False)
    pydicom.filereader._read_file_meta_info(fp)
    return raw[fp.tell():]


def _pixels(ds: pydicom.Dataset) -> np.ndarray | None:
    try:
        return ds.pixel_array
    except Exception:  # noqa: BLE001 - no decoder for it: compare nothing
        return None


@pytest.fixture
def raw_sending(monkeypatch):
    """pynetdicom sends files from disk as they are, not decoded and re-encoded."""
    from pynetdicom import _config

    monkeypatch.setattr(_config, "STORE_SEND_CHUNKED_DATASET", True)


def test_storescu_sends_every_transfer_syntax(runtime, services, tmp_path, raw_sending):
    by_ts, lacking, broken, originals = _usable_files(tmp_path / "testdata")
    families = [
        {"1.2.840.10008.1.2"}, {"1.2.840.10008.1.2.1"}, {"1.2.840.10008.1.2.2"},
        {"1.2.840.10008.1.2.1.99"}, {"1.2.840.10008.1.2.4.50"}, {"1.2.840.10008.1.2.4.70"},
        {"1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.81"},
        {"1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.91"}, {"1.2.840.10008.1.2.5"},
    ]
    missing = [f for f in families if not f & set(by_ts)]
    assert not missing, f"pydicom-data lacks {missing}"
    port = runtime.scp.port
    for ts, files in by_ts.items():
        r = storescu(port, files, "TESTSCU", "RADTRIAGE", "-R", "-nh", STORESCU_OPTION[ts])
        out = r.stdout + r.stderr
        assert "Store Failed" not in out and "E: " not in out, (ts, out[-2000:])
    # those without (valid) Study/Series/SOP UIDs are refused: "cannot understand"
    assert lacking
    assert set(_raw_send(port, lacking)) <= {0xC001, 0xC002}
    # truncated files (an element longer than the bytes left) are "cannot understand"
    assert broken
    assert set(_raw_send(port, broken)) == {0xC000}

    rows = {r["sop_instance_uid"]: r for r in instances.instance_rows(services.db)}
    missing = {originals[u].name for u in set(originals) - set(rows)}
    assert not missing, f"not stored: {missing}"
    assert set(rows) == set(originals), "nothing else stored"
    decoded = 0
    for sop_uid, src in originals.items():
        stored = pydicom.dcmread(rows[sop_uid]["path"])
        original = pydicom.dcmread(src)
        assert stored.SOPInstanceUID == sop_uid
        a, b = _pixels(original), _pixels(stored)
        if a is not None:
            assert b is not None, f"{src.name}: stored pixels do not decode"
            np.testing.assert_array_equal(a, b, err_msg=src.name)
            decoded += 1
        # the data set elements are those of the original (storescu may re-encode
        # the stream to the negotiated transfer syntax, never change values)
        for elem in original:
            if elem.tag.group in (0x7FE0, 0xFFFC) or elem.VR == "SQ":
                continue
            assert elem.tag in stored, f"{src.name}: {elem.tag} lost"
    assert decoded >= 60, "pixels of the decodable files compared"
    assert not list(Path(services.spool.root).rglob("*.part"))


def _raw_send(port: int, files: list[Path]) -> list[int]:
    """Send files with pynetdicom, streaming each file's data set without decoding it."""
    from pynetdicom import AE, _config

    assert _config.STORE_SEND_CHUNKED_DATASET, "use the raw_sending fixture"
    ae = AE(ae_title="RAWSCU")
    for f in files:
        ds = pydicom.dcmread(f, stop_before_pixels=True)
        ae.add_requested_context(ds.file_meta.MediaStorageSOPClassUID, ds.file_meta.TransferSyntaxUID)
    assoc = ae.associate("127.0.0.1", port, ae_title="RADTRIAGE")
    assert assoc.is_established
    try:
        return [assoc.send_c_store(f).Status for f in files]
    finally:
        assoc.release()


def test_raw_send_is_stored_byte_identical(runtime, services, tmp_path, raw_sending):
    """The stored data set is the very bytes sent."""
    by_ts, _lacking, _broken, _ = _usable_files(tmp_path / "testdata")
    files = [fs[0] for fs in by_ts.values()]
    assert _raw_send(runtime.scp.port, files) == [0x0000] * len(files)
    rows = {r["sop_instance_uid"]: r for r in instances.instance_rows(services.db)}
    for f in files:
        sop = str(pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID)
        stored = Path(rows[sop]["path"]).read_bytes()
        assert _dataset_bytes(stored) == _dataset_bytes(f.read_bytes()), f.name
        assert rows[sop]["transfer_syntax_uid"] == str(pydicom.dcmread(f, stop_before_pixels=True).file_meta.TransferSyntaxUID)
