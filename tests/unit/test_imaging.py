"""imaging: DICOM series to Volume (every accepted transfer syntax, enhanced multi-frame,
geometry defects, hostile headers) and key-image rendering.

Fixtures are pydicom-data test files (no patients) and tiny synthetic series built here.
"""

from __future__ import annotations

import copy
import time
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom import uid
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence

from radtriage.imaging import keyimage
from radtriage.imaging.series import load_series
from radtriage.imaging.volume import Volume, VolumeError
from radtriage.ingest.scp import ACCEPTED_TRANSFER_SYNTAXES

gdcm = pytest.importorskip("gdcm")

AXIAL = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
SECRET = "Doe^Jane"  # a patient name that must never reach an error message


def _testdata(name: str) -> Path:
    path = get_testdata_file(name)
    if path is None:
        pytest.skip(f"pydicom-data file {name} not available")
    return Path(path)


def _file_meta(sop_class: str, sop_uid: str, ts: str = uid.ExplicitVRLittleEndian) -> FileMetaDataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ts
    return meta


def _ct_slice(hu: np.ndarray, position, *, orientation=AXIAL, spacing=(0.5, 0.5), instance: int = 1,
              image_type=("ORIGINAL", "PRIMARY", "AXIAL")) -> Dataset:
    ds = Dataset()
    ds.SOPClassUID = uid.CTImageStorage
    ds.SOPInstanceUID = uid.generate_uid()
    ds.file_meta = _file_meta(ds.SOPClassUID, ds.SOPInstanceUID)
    ds.Modality = "CT"
    ds.PatientName = SECRET
    ds.PatientID = "PID-SECRET-42"
    ds.SeriesInstanceUID = "1.2.3.4"
    ds.ImageType = list(image_type)
    ds.InstanceNumber = instance
    ds.ImagePositionPatient = [round(float(v), 4) for v in position]
    ds.ImageOrientationPatient = [round(float(v), 6) for v in orientation]
    ds.PixelSpacing = list(spacing)
    ds.SliceThickness = 5.0
    ds.Rows, ds.Columns = hu.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
    ds.RescaleIntercept, ds.RescaleSlope = -1024, 1
    ds.PixelData = (np.rint(hu) + 1024).astype(np.int16).tobytes()
    return ds


def _write(folder: Path, datasets: list[Dataset]) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, ds in enumerate(datasets):
        p = folder / f"{i:03d}.dcm"
        ds.save_as(p, enforce_file_format=True)
        paths.append(p)
    return paths


def _stack_from(fn, positions, *, orientation=AXIAL, shape=(24, 24), spacing=(1.0, 1.0)) -> list[Dataset]:
    """Slices whose HU are fn(LPS) sampled at every pixel: geometry can be checked exactly."""
    row, col = np.asarray(orientation[:3]), np.asarray(orientation[3:])
    ii, jj = np.mgrid[:shape[0], :shape[1]]
    out = []
    for k, p in enumerate(positions):
        lps = (np.asarray(p)[None, None, :] + (jj[..., None] * spacing[1]) * row + (ii[..., None] * spacing[0]) * col)
        out.append(_ct_slice(fn(lps), p, orientation=orientation, spacing=spacing, instance=k + 1))
    return out


def _linear(lps: np.ndarray) -> np.ndarray:
    return 3.0 * lps[..., 0] + 10.0 * lps[..., 1] + 20.0 * lps[..., 2] - 500.0


def _check_linear(vol: Volume, inner: tuple[slice, slice] = (slice(None), slice(None)), tol: float = 1.01) -> None:
    """Every voxel holds _linear(voxel_to_lps(voxel)) (up to the stored rounding)."""
    z, y, x = np.meshgrid(*(np.arange(n) for n in vol.array.shape), indexing="ij")
    want = _linear(vol.voxel_to_lps(np.stack([z, y, x], axis=-1)))
    err = np.abs(vol.array - want)[(slice(None), *inner)]
    assert err.max() <= tol, f"largest geometry error {err.max():.2f} HU"


# --------------------------------------------------------------------------- transfer syntaxes


LOSSLESS_TWINS = [
    ("MR_small.dcm", "MR_small_implicit.dcm"),
    ("MR_small.dcm", "MR_small_bigendian.dcm"),
    ("MR_small.dcm", "MR_small_RLE.dcm"),
    ("MR_small.dcm", "MR_small_jp2klossless.dcm"),
    ("MR_small.dcm", "MR_small_jpeg_ls_lossless.dcm"),
    ("693_UNCR.dcm", "693_J2KR.dcm"),
    ("emri_small.dcm", "emri_small_RLE.dcm"),
    ("emri_small.dcm", "emri_small_big_endian.dcm"),
    ("emri_small.dcm", "emri_small_jpeg_2k_lossless.dcm"),
    ("emri_small.dcm", "emri_small_jpeg_ls_lossless.dcm"),
]


@pytest.mark.parametrize("reference, twin", LOSSLESS_TWINS)
def test_lossless_twins_decode_to_identical_values(reference, twin):
    ref = load_series([_testdata(reference)])
    got = load_series([_testdata(twin)])
    assert got.array.shape == ref.array.shape and got.array.dtype == np.float32
    np.testing.assert_array_equal(got.array, ref.array)
    assert got.spacing == ref.spacing and got.origin == ref.origin


def test_lossy_jpeg2000_ct_is_close_to_the_original():
    orig = load_series([_testdata("693_UNCR.dcm")]).array
    lossy = load_series([_testdata("693_J2KI.dcm")]).array
    np.testing.assert_array_equal(lossy, load_series([_testdata("693_UNCI.dcm")]).array)  # its decoded twin
    assert not np.array_equal(lossy, orig)
    assert np.mean(np.abs(lossy - orig)) < 0.1 * np.std(orig)
    assert np.corrcoef(lossy.ravel(), orig.ravel())[0, 1] > 0.99


def test_jpeg_extended_12_bit_decodes_close_to_its_lossless_twin():
    """pydicom's GDCM plugin refuses 12-bit JPEG Extended; the loader falls back to GDCM itself."""
    lossless = load_series([_testdata("JPEG-LL.dcm")]).array
    lossy = load_series([_testdata("JPGExtended.dcm")]).array
    assert lossy.shape == lossless.shape == (1024, 256)
    assert np.mean(np.abs(lossy - lossless)) < 5 and np.abs(lossy - lossless).max() < 64


def _gdcm_convert(src: Path, dst: Path, syntax) -> Path:
    reader = gdcm.ImageReader()
    reader.SetFileName(str(src))
    assert reader.Read()
    change = gdcm.ImageChangeTransferSyntax()
    change.SetTransferSyntax(gdcm.TransferSyntax(syntax))
    change.SetInput(reader.GetImage())
    assert change.Change()
    writer = gdcm.ImageWriter()
    writer.SetFileName(str(dst))
    writer.SetFile(reader.GetFile())
    writer.SetImage(change.GetOutput())
    assert writer.Write()
    return dst


def _source(tmp: Path, bits: int) -> tuple[Path, np.ndarray]:
    """A 3-slice CT whose stored values fit ``bits`` (8 or 12 bits for JPEG baseline/extended)."""
    rng = np.random.default_rng(bits)
    top = 2 ** bits - 1  # lossy JPEG near 0 or the top can wrap around in GDCM's codec: keep a margin
    base = np.add.outer(np.arange(32), np.arange(32)).astype(np.float64) * top / 62
    hu = np.clip(np.rint(base + rng.normal(0, 3, (32, 32))), 0.1 * top, 0.9 * top) - 1024
    ds = _ct_slice(hu, (0, 0, 0))
    ds.BitsAllocated = 8 if bits == 8 else 16
    ds.BitsStored, ds.HighBit, ds.PixelRepresentation = bits, bits - 1, 0
    stored = (hu + 1024).astype(np.uint8 if bits == 8 else np.uint16)
    ds.PixelData = stored.tobytes()
    p = tmp / f"src{bits}.dcm"
    ds.save_as(p, enforce_file_format=True)
    return p, hu.astype(np.float32)


def _encode(tmp: Path, syntax: str) -> tuple[Path, np.ndarray, float]:
    """One instance in ``syntax`` and the HU it should decode to, with the allowed error."""
    ct = _testdata("CT_small.dcm")
    ref = load_series([ct]).array[0]
    out = tmp / f"{syntax}.dcm"
    if syntax in (uid.ImplicitVRLittleEndian, uid.ExplicitVRLittleEndian, uid.DeflatedExplicitVRLittleEndian):
        ds = pydicom.dcmread(ct)
        ds.file_meta.TransferSyntaxUID = syntax
        ds.save_as(out, enforce_file_format=True)
        return out, ref, 0.0
    if syntax == uid.ExplicitVRBigEndian:  # pydicom 3 writes no big endian: pydicom-data's twin
        return _testdata("MR_small_bigendian.dcm"), load_series([_testdata("MR_small.dcm")]).array, 0.0
    if syntax in (uid.RLELossless, uid.JPEGLSLossless, uid.JPEG2000Lossless):
        ds = pydicom.dcmread(ct)
        ds.compress(syntax)
        ds.save_as(out)
        return out, ref, 0.0
    if syntax == uid.JPEGLSNearLossless:
        ds = pydicom.dcmread(ct)
        ds.compress(syntax, jls_error=3)
        ds.save_as(out)
        return out, ref, 3.0
    if syntax == uid.JPEG2000:
        ds = pydicom.dcmread(ct)
        ds.compress(syntax, j2k_cr=[10])
        ds.save_as(out)
        return out, ref, 0.1 * float(np.ptp(ref))
    if syntax in (uid.HTJ2KLossless, uid.HTJ2KLosslessRPCL, uid.HTJ2K):
        # No HTJ2K encoder is installed: an HTJ2K decoder (OpenJPEG) also reads Part 1 codestreams,
        # so a lossless J2K codestream labelled HTJ2K exercises the HTJ2K decoding path.
        ds = pydicom.dcmread(ct)
        ds.compress(uid.JPEG2000Lossless)
        ds.file_meta.TransferSyntaxUID = syntax
        ds.save_as(out)
        return out, ref, 0.0
    if syntax in (uid.JPEGLossless, uid.JPEGLosslessSV1):
        enum = gdcm.TransferSyntax.JPEGLosslessProcess14 if syntax == uid.JPEGLossless \
            else gdcm.TransferSyntax.JPEGLosslessProcess14_1
        return _gdcm_convert(ct, out, enum), ref, 0.0
    if syntax in (uid.JPEGBaseline8Bit, uid.JPEGExtended12Bit):
        bits = 8 if syntax == uid.JPEGBaseline8Bit else 12
        src, hu = _source(tmp, bits)
        enum = gdcm.TransferSyntax.JPEGBaselineProcess1 if bits == 8 else gdcm.TransferSyntax.JPEGExtendedProcess2_4
        return _gdcm_convert(src, out, enum), hu, 0.05 * 2 ** bits
    raise AssertionError(f"no test case for {syntax.name}")


@pytest.mark.parametrize("syntax", ACCEPTED_TRANSFER_SYNTAXES, ids=lambda s: s.name)
def test_every_accepted_transfer_syntax_decodes_to_the_same_hu(tmp_path, syntax):
    path, want, tol = _encode(tmp_path, syntax)
    assert pydicom.dcmread(path, stop_before_pixels=True).file_meta.TransferSyntaxUID == syntax
    got = load_series([path]).array
    assert got.shape[-2:] == want.shape[-2:]
    err = np.abs(got.reshape(want.shape) - want)
    if tol == 0:
        np.testing.assert_array_equal(got.reshape(want.shape), want)
    else:
        assert err.max() <= tol and err.mean() <= 0.75 * tol


def test_undecodable_pixel_data_is_a_volume_error_without_identifiers(tmp_path):
    ds = pydicom.dcmread(_testdata("CT_small.dcm"))
    ds.compress(uid.JPEG2000Lossless)
    ds.PatientName = SECRET
    frame = bytearray(next(pydicom.encaps.generate_frames(ds.PixelData, number_of_frames=1)))
    frame[200:] = b"\x00" * (len(frame) - 200)  # a broken codestream
    ds.PixelData = pydicom.encaps.encapsulate([bytes(frame)])
    p = tmp_path / f"{SECRET}.dcm"
    ds.save_as(p)
    with pytest.raises(VolumeError, match=r"instance 1: pixel data could not be decoded \(JPEG 2000") as e:
        load_series([p])
    assert SECRET not in str(e.value) and "Doe" not in str(e.value) and str(tmp_path) not in str(e.value)


def test_truncated_and_non_dicom_files_are_volume_errors(tmp_path):
    with pytest.raises(VolumeError, match="instance 1: pixel data could not be decoded"):
        load_series([_testdata("MR_truncated.dcm")])
    junk = tmp_path / "junk.dcm"
    junk.write_bytes(b"not a DICOM file at all" * 10)
    with pytest.raises(VolumeError, match="instance 2: not readable as DICOM"):
        load_series([_testdata("CT_small.dcm"), junk])


def test_colour_images_are_refused():
    with pytest.raises(VolumeError, match="greyscale images only"):
        load_series([_testdata("SC_rgb.dcm")])


# --------------------------------------------------------------------------- radiographs


def test_monochrome1_radiograph_is_inverted_so_denser_is_brighter(tmp_path):
    stored = np.full((40, 30), 3000, np.uint16)  # MONOCHROME1: high stored value = dark = air
    stored[10:30, 10:20] = 500  # bone: low stored value, shown white
    ds = Dataset()
    ds.SOPClassUID = uid.ComputedRadiographyImageStorage
    ds.SOPInstanceUID = uid.generate_uid()
    ds.file_meta = _file_meta(ds.SOPClassUID, ds.SOPInstanceUID)
    ds.Modality = "CR"
    ds.Rows, ds.Columns = stored.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME1"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.ImagerPixelSpacing = [0.2, 0.15]
    ds.PixelData = stored.tobytes()
    (p,) = _write(tmp_path, [ds])
    vol = load_series([p])
    assert vol.is_2d and vol.spacing == (0.2, 0.15)
    assert vol.array[20, 15] > vol.array[2, 2]
    assert vol.array[20, 15] - vol.array[2, 2] == 2500
    ds.PhotometricInterpretation = "MONOCHROME2"
    (p2,) = _write(tmp_path / "m2", [ds])
    assert load_series([p2]).array[20, 15] < load_series([p2]).array[2, 2]


# --------------------------------------------------------------------------- stacks


def test_shuffled_files_sort_along_the_normal(tmp_path):
    positions = [(-10.0, -12.0, 50.0 + 2.5 * k) for k in range(6)]
    paths = _write(tmp_path, _stack_from(_linear, positions))
    rng = np.random.default_rng(1)
    shuffled = [paths[i] for i in rng.permutation(len(paths))]
    vol = load_series(shuffled)
    assert vol.array.shape == (6, 24, 24) and vol.flags == ()
    assert vol.origin == (-10.0, -12.0, 50.0)
    assert vol.spacing == pytest.approx((2.5, 1.0, 1.0))
    _check_linear(vol)
    assert np.allclose(vol.lps_to_voxel(vol.voxel_to_lps(np.array([3.0, 4.0, 5.0]))), [3, 4, 5])


def test_missing_slice_is_flagged_interpolated_and_reported(tmp_path):
    positions = [(0.0, 0.0, 5.0 * k) for k in (0, 1, 2, 4, 5, 6)]  # 15 mm missing
    paths = _write(tmp_path, _stack_from(_linear, positions))
    vol = load_series(paths)
    assert {"missing-slices", "resampled"} <= set(vol.flags)
    assert vol.array.shape == (7, 24, 24) and vol.spacing[0] == pytest.approx(5.0)
    assert vol.meta["missing_slice_indices"] == [3]
    assert vol.meta["missing_slice_positions"] == [[0.0, 0.0, 15.0]]
    _check_linear(vol)  # the filled slice sits at the right place
    raw = load_series(paths, resample=False)
    assert raw.array.shape == (6, 24, 24) and "missing-slices" in raw.flags and "resampled" not in raw.flags
    assert raw.meta["missing_slice_positions"] == [[0.0, 0.0, 15.0]]


def test_non_uniform_spacing_is_resampled_onto_a_uniform_grid(tmp_path):
    zs = [0.0, 2.0, 5.0, 7.0, 10.0, 12.0, 15.0]  # steps 2, 3, 2, 3...: median 2.5
    paths = _write(tmp_path, _stack_from(_linear, [(1.0, 2.0, z) for z in zs]))
    vol = load_series(paths)
    assert {"non-uniform-spacing", "resampled"} <= set(vol.flags) and "missing-slices" not in vol.flags
    assert vol.spacing[0] == pytest.approx(2.5) and vol.array.shape[0] == 7
    centres = vol.voxel_to_lps(np.array([[k, 0, 0] for k in range(7)], float))
    np.testing.assert_allclose(centres[:, 2], np.arange(7) * 2.5)
    _check_linear(vol)
    assert np.allclose(np.diff(vol.array[:, 5, 5]), 20.0 * 2.5, atol=1.01)


def test_gantry_tilt_is_detected_and_shear_corrected(tmp_path):
    tilt = np.radians(15.0)
    orientation = (1.0, 0.0, 0.0, 0.0, np.cos(tilt), np.sin(tilt))  # tilted image plane
    positions = [(0.0, -8.0, 5.0 * k) for k in range(6)]  # the table moves along z only
    paths = _write(tmp_path, _stack_from(_linear, positions, orientation=orientation, shape=(40, 24)))
    vol = load_series(paths)
    assert {"gantry-tilt", "tilt-corrected"} <= set(vol.flags)
    assert vol.meta["gantry_tilt_deg"] == pytest.approx(15.0, abs=0.1)
    d = np.asarray(vol.direction)
    np.testing.assert_allclose(d.T @ d, np.eye(3), atol=1e-9)  # orthogonal grid
    drift_px = 5 * 5.0 * np.sin(tilt) / 2  # half the total drift, either way
    _check_linear(vol, inner=(slice(int(drift_px) + 2, 40 - int(drift_px) - 2), slice(None)))
    raw = load_series(paths, correct_tilt=False)
    assert "gantry-tilt" in raw.flags and "tilt-corrected" not in raw.flags
    assert raw.array.shape == (6, 40, 24) and raw.origin == positions[0]  # slices as acquired, in order
    _check_linear(raw)  # sheared direction: the acquired pixels, exact geometry
    np.testing.assert_allclose(raw.lps_to_voxel(raw.voxel_to_lps(np.array([4.0, 7.0, 3.0]))), [4, 7, 3])
    np.testing.assert_array_equal(raw.array[:, 0, 0], np.rint(_linear(np.array(positions))))


def test_untilted_series_is_not_flagged(tmp_path):
    paths = _write(tmp_path, _stack_from(_linear, [(0.0, 0.0, 3.0 * k) for k in range(4)]))
    vol = load_series(paths)
    assert not {"gantry-tilt", "tilt-corrected", "resampled"} & set(vol.flags)
    np.testing.assert_array_equal(vol.direction, np.eye(3))


def test_mixed_sizes_and_orientations_are_volume_errors(tmp_path):
    a = _ct_slice(np.zeros((16, 16)), (0, 0, 0))
    b = _ct_slice(np.zeros((16, 20)), (0, 0, 5))
    with pytest.raises(VolumeError, match="different sizes"):
        load_series(_write(tmp_path / "size", [a, b]))
    c = _ct_slice(np.zeros((16, 16)), (0, 0, 5), orientation=(0, 1, 0, 0, 0, -1))
    with pytest.raises(VolumeError, match="different orientations"):
        load_series(_write(tmp_path / "orient", [a, c]))
    d = _ct_slice(np.zeros((16, 16)), (0, 0, 5))
    d.SeriesInstanceUID = "1.2.3.5"  # same geometry, another series (e.g. a bone-kernel reconstruction)
    with pytest.raises(VolumeError, match="2 different series"):
        load_series(_write(tmp_path / "series", [a, d]))


def test_duplicate_positions_keep_the_latest_instance(tmp_path):
    slices = [_ct_slice(np.full((8, 8), 10.0 * k), (0, 0, 5.0 * k), instance=k + 1) for k in range(4)]
    again = _ct_slice(np.full((8, 8), 999.0), (0, 0, 5.0), instance=9)  # re-sent slice 2, newer
    vol = load_series(_write(tmp_path, [slices[0], again, slices[1], slices[2], slices[3]]))
    assert vol.array.shape == (4, 8, 8) and "duplicate-positions" in vol.flags
    assert vol.meta["duplicate_positions_dropped"] == 1
    np.testing.assert_array_equal(vol.array[:, 0, 0], [0, 999, 20, 30])
    with pytest.raises(VolumeError, match="one position"):
        load_series(_write(tmp_path / "same", [slices[0], slices[0]]))


def test_absurd_dimensions_are_refused_before_decoding(tmp_path):
    ds = _ct_slice(np.zeros((4, 4)), (0, 0, 0))
    ds.Rows, ds.Columns, ds.NumberOfFrames = 65535, 65535, 1000
    with pytest.raises(VolumeError, match="too large"):
        load_series(_write(tmp_path / "huge", [ds]))
    small = [_ct_slice(np.zeros((8, 8)), (0, 0, k)) for k in range(4)]
    paths = _write(tmp_path / "small", small)
    with pytest.raises(VolumeError, match="too large"):
        load_series(paths, max_voxels=200)
    assert load_series(paths, max_voxels=256).array.shape == (4, 8, 8)


def test_localizers_and_non_image_objects_are_left_out(tmp_path):
    slices = [_ct_slice(np.full((8, 8), 5.0 * k), (0, 0, 5.0 * k), instance=k + 2) for k in range(3)]
    scout = _ct_slice(np.zeros((16, 16)), (0, -100, 100), orientation=(0, 1, 0, 0, 0, -1), instance=1,
                      image_type=("ORIGINAL", "PRIMARY", "LOCALIZER"))
    sr = Dataset()
    sr.SOPClassUID = uid.BasicTextSRStorage
    sr.SOPInstanceUID = uid.generate_uid()
    sr.file_meta = _file_meta(sr.SOPClassUID, sr.SOPInstanceUID)
    sr.Modality = "SR"
    vol = load_series(_write(tmp_path, [scout, *slices, sr]))
    assert vol.array.shape == (3, 8, 8) and vol.flags == ()
    assert vol.meta["left_out"] == {"localizer": 1, "non-image": 1}
    with pytest.raises(VolumeError, match="no image instances"):
        load_series(_write(tmp_path / "only", [scout, sr]))


# --------------------------------------------------------------------------- enhanced multi-frame


def _enhanced_ct(hu: np.ndarray, positions, *, per_frame_rescale: bool, order, localizer_frame: int | None = None
                 ) -> Dataset:
    """Enhanced CT Image Storage: positions per frame; orientation, spacing (and rescale) shared."""
    ds = Dataset()
    ds.SOPClassUID = uid.EnhancedCTImageStorage
    ds.SOPInstanceUID = uid.generate_uid()
    ds.file_meta = _file_meta(ds.SOPClassUID, ds.SOPInstanceUID)
    ds.Modality = "CT"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL", "NONE"]
    ds.InstanceNumber = 1
    ds.NumberOfFrames = len(order)
    ds.Rows, ds.Columns = hu.shape[1:]
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
    shared = Dataset()
    orient, measures = Dataset(), Dataset()
    orient.ImageOrientationPatient = list(AXIAL)
    measures.PixelSpacing, measures.SliceThickness = [0.5, 0.5], 5.0
    shared.PlaneOrientationSequence = Sequence([orient])
    shared.PixelMeasuresSequence = Sequence([measures])
    intercepts = [-1024.0 - 10 * k for k in range(len(order))] if per_frame_rescale else [-1024.0] * len(order)
    if not per_frame_rescale:
        pvt = Dataset()
        pvt.RescaleIntercept, pvt.RescaleSlope, pvt.RescaleType = -1024, 1, "HU"
        shared.PixelValueTransformationSequence = Sequence([pvt])
    ds.SharedFunctionalGroupsSequence = Sequence([shared])
    frames, stored = [], []
    for f, k in enumerate(order):
        item, plane = Dataset(), Dataset()
        plane.ImagePositionPatient = list(positions[k])
        item.PlanePositionSequence = Sequence([plane])
        if per_frame_rescale:
            pvt = Dataset()
            pvt.RescaleIntercept, pvt.RescaleSlope, pvt.RescaleType = intercepts[f], 1, "HU"
            item.PixelValueTransformationSequence = Sequence([pvt])
        ftype = Dataset()
        ftype.FrameType = ["ORIGINAL", "PRIMARY", "LOCALIZER" if f == localizer_frame else "AXIAL", "NONE"]
        item.CTImageFrameTypeSequence = Sequence([ftype])
        frames.append(item)
        stored.append(np.rint(hu[k] - intercepts[f]).astype(np.int16))
    ds.PerFrameFunctionalGroupsSequence = Sequence(frames)
    ds.PixelData = np.stack(stored).tobytes()
    return ds


@pytest.mark.parametrize("per_frame_rescale", [False, True])
def test_enhanced_multiframe_ct_equals_the_same_single_frames(tmp_path, per_frame_rescale):
    rng = np.random.default_rng(3)
    hu = rng.integers(-1000, 1500, size=(5, 12, 10)).astype(np.float64)
    positions = [(-3.0, 4.0, 100.0 - 5.0 * k) for k in range(5)]  # written head to feet
    singles = load_series(_write(tmp_path / "single", [
        _ct_slice(hu[k], positions[k], instance=k + 1) for k in range(5)]))
    enhanced = _enhanced_ct(hu, positions, per_frame_rescale=per_frame_rescale, order=[2, 0, 4, 1, 3])
    (path,) = _write(tmp_path / "enh", [enhanced])
    vol = load_series([path])
    np.testing.assert_array_equal(vol.array, singles.array)
    assert vol.spacing == singles.spacing and vol.origin == singles.origin == (-3.0, 4.0, 80.0)
    np.testing.assert_array_equal(vol.direction, singles.direction)
    assert vol.meta["SliceThickness"] == 5.0 and vol.flags == ()


def test_enhanced_localizer_frame_is_left_out(tmp_path):
    hu = np.arange(4 * 6 * 6, dtype=np.float64).reshape(4, 6, 6)
    positions = [(0.0, 0.0, 5.0 * k) for k in range(4)]
    enhanced = _enhanced_ct(hu, positions, per_frame_rescale=False, order=[0, 1, 2, 3], localizer_frame=3)
    vol = load_series(_write(tmp_path, [enhanced]))
    assert vol.array.shape == (3, 6, 6) and vol.meta["left_out"] == {"localizer": 1}
    np.testing.assert_array_equal(vol.array, hu[:3])


def test_pydicom_enhanced_ct_sample_becomes_a_stack():
    vol = load_series([_testdata("eCT_Supplemental.dcm")])
    ds = pydicom.dcmread(_testdata("eCT_Supplemental.dcm"))
    assert vol.array.shape == (2, 512, 512)
    assert vol.spacing[0] == pytest.approx(10.0)
    pvt = ds.SharedFunctionalGroupsSequence[0].get("PixelValueTransformationSequence") or \
        ds.PerFrameFunctionalGroupsSequence[0].PixelValueTransformationSequence
    raw = ds.pixel_array.astype(np.float32) * float(pvt[0].RescaleSlope) + float(pvt[0].RescaleIntercept)
    assert {tuple(np.round(vol.array[k, 256, 250:253])) for k in range(2)} == \
        {tuple(np.round(raw[k, 256, 250:253])) for k in range(2)}


# --------------------------------------------------------------------------- key images


def _ct_volume(shape=(6, 64, 64)) -> Volume:
    rng = np.random.default_rng(7)
    arr = rng.normal(30, 5, shape).astype(np.float32)
    arr[3, 20:30, 30:44] = 70.0  # a "bleed"
    return Volume(arr, (5.0, 0.5, 0.5))


def test_key_image_png_has_expected_size_disclaimer_band_and_box(tmp_path):
    vol = _ct_volume()
    box = ((3, 4), (20, 30), (30, 44))
    path = keyimage.render_key_image(vol, box=box, window=(40, 80), label="ICH intraparenchymal 12 mL",
                                     path=tmp_path / "k" / "finding1.png")
    plain = keyimage.render_key_image(vol, slice_index=3, window=(40, 80), label="ICH intraparenchymal 12 mL",
                                      path=tmp_path / "plain.png")
    img, ref = np.asarray(Image.open(path).convert("RGB")), np.asarray(Image.open(plain).convert("RGB"))
    scale = keyimage.display_scale(64, 64)
    assert scale == 8
    assert Image.open(path).format == "PNG"
    assert img.shape == (64 * scale + keyimage.banner_height(64 * scale), 64 * scale, 3)
    assert not np.array_equal(img, ref)
    edge = img[20 * scale - 1, 30 * scale:44 * scale]  # just above the box's top edge
    assert np.all(edge[:, 0] > 200) and np.all(edge[:, 1] < 100)  # red line
    inner = (slice(20 * scale + 2, 30 * scale - 2), slice(30 * scale + 2, 44 * scale - 2))
    np.testing.assert_array_equal(img[inner], ref[inner])  # the finding itself is not painted over
    band = img[64 * scale:]
    assert band.max() == 255 and (band.sum(axis=2) > 0).mean() > 0.01  # text burned into the band
    assert not {k.lower() for k in Image.open(path).info} & {"comment", "description", "author", "title"}


def test_key_image_flat_box_draws_the_same_as_nested(tmp_path):
    vol = _ct_volume()
    nested = keyimage.render_key_image(vol, slice_index=3, box=((20, 30), (30, 44)), window=(40, 80), label="n",
                                       path=tmp_path / "nested.png")
    flat = keyimage.render_key_image(vol, slice_index=3, box=(20, 30, 30, 44), window=(40, 80), label="n",
                                     path=tmp_path / "flat.png")
    assert np.array_equal(np.asarray(Image.open(nested)), np.asarray(Image.open(flat)))
    with pytest.raises(ValueError):
        keyimage.render_key_image(vol, box=(1, 2, 3), label="n", path=tmp_path / "bad.png")


def test_key_image_contour_and_radiograph(tmp_path):
    vol = _ct_volume()
    mask = np.zeros(vol.array.shape, bool)
    mask[3, 20:30, 30:44] = True
    p = keyimage.render_key_image(vol, contour_mask=mask, window=(40, 80), label="ICH", path=tmp_path / "c.png")
    img = np.asarray(Image.open(p).convert("RGB"))
    yellow = (img[..., 0] > 200) & (img[..., 1] > 150) & (img[..., 2] < 80)
    ys, xs = np.nonzero(yellow[:64 * 8])
    assert ys.min() == 20 * 8 and ys.max() == 30 * 8 - 1 and xs.min() == 30 * 8  # outline of slice 3's mask
    xr = Volume(np.random.default_rng(0).random((300, 200)).astype(np.float32), (0.2, 0.2))
    p2 = keyimage.render_key_image(xr, box=((10, 50), (20, 60)), label="bone age 10.5 y", path=tmp_path / "x.png")
    assert Image.open(p2).size == (400, 600 + keyimage.banner_height(400))


def test_key_image_is_fast_for_a_512_slice(tmp_path):
    vol = Volume(np.random.default_rng(0).normal(40, 30, (3, 512, 512)).astype(np.float32), (5.0, 0.45, 0.45))
    mask = np.zeros(vol.array.shape, bool)
    mask[1, 200:260, 220:300] = True
    best = 1e9
    for _ in range(3):
        t = time.perf_counter()
        keyimage.render_key_image(vol, box=((1, 2), (200, 260), (220, 300)), contour_mask=mask, window=(40, 80),
                                  label="ICH intraparenchymal 12 mL", path=tmp_path / "f.png")
        best = min(best, time.perf_counter() - t)
    assert best < 0.3
