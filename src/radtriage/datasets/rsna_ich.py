"""RSNA Intracranial Hemorrhage Detection (Kaggle 2019) as downloaded.

Layout (stage 2; stage 1 names also accepted)::

    root/stage_2_train.csv          ID,Label  with ID = ID_<hex>_<subtype>, six rows an image
    root/stage_2_train/ID_<hex>.dcm one axial slice a file
    root/stage_2_test/...           (no labels: ignored)

Slices are grouped into series by SeriesInstanceUID and sorted along the slice
normal exactly as `radtriage.imaging.series.load_series` sorts them, so that
``slice_labels`` index the loaded volume. Only the headers needed are read
while indexing. Images without label rows are left out (the test set), label
rows without an image are counted, and every other problem (unreadable file,
no geometry, two slices at one position...) leaves out the file or series with
a count, logged once.

Known quirk handled: some slices store 12-bit unsigned pixels with a Rescale
Intercept near 0 although air is stored wrapped around 4096 (raw 3096 =
-1000 HU). Those slices (BitsStored 12, PixelRepresentation 0, intercept
> -100, slope 1) are corrected on load to HU = ((raw + 1000) mod 4096) - 1000,
and the volume carries the flag ``"rescale-corrected"``.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pydicom

from radtriage.datasets import Example, age_band
from radtriage.datasets._tables import DatasetError, Skips, finite, read_table
from radtriage.imaging.series import load_series
from radtriage.imaging.volume import Volume, VolumeError

log = logging.getLogger(__name__)

SUBTYPES = ("epidural", "intraparenchymal", "intraventricular", "subarachnoid", "subdural")
LABEL_NAMES = (*SUBTYPES, "any")
# (label CSV, image folder) of each split that has labels, newest first
SPLITS = (("stage_2_train.csv", "stage_2_train"), ("stage_1_train.csv", "stage_1_train_images"))
HEADER_TAGS = [
    "SeriesInstanceUID", "StudyInstanceUID", "PatientID", "ImagePositionPatient", "ImageOrientationPatient",
    "ImageType", "Rows", "Columns", "BitsStored", "PixelRepresentation", "RescaleIntercept", "RescaleSlope",
    "PatientSex", "PatientAge", "Manufacturer", "ManufacturerModelName", "SliceThickness",
]
_IMAGE_ID = re.compile(r"^ID_[0-9A-Za-z]+$")


@dataclass(frozen=True)
class IchSeries:
    """One labelled series: files in volume order and what is known of them."""

    series_uid: str
    study_uid: str
    patient_id: str  # for patient-level splits (one patient can have several studies)
    files: tuple[Path, ...]  # sorted along the slice normal, as load_series orders them
    label: dict[str, Any]
    groups: dict[str, str]
    wrapped: tuple[tuple[int, float], ...] = ()  # (slice index, intercept) of slices stored wrapped (see module doc)
    first_position: tuple[float, float, float] = (0.0, 0.0, 0.0)

    def load(self) -> Volume:
        vol = load_series(self.files, resample=False, correct_tilt=False)  # slice labels index the files
        if vol.array.ndim != 3 or vol.array.shape[0] != len(self.files):
            raise VolumeError(f"series {self.series_uid}: {len(self.files)} files but the volume has "
                              f"{vol.array.shape[0] if vol.array.ndim == 3 else 'no'} slices")
        if np.max(np.abs(np.asarray(vol.origin) - np.asarray(self.first_position))) > 1e-3:
            raise VolumeError(f"series {self.series_uid}: slice order differs from the index")
        if not self.wrapped:
            return vol
        arr = vol.array.copy()
        for k, intercept in self.wrapped:
            raw = np.rint(arr[k] - intercept)  # slope 1: back to the stored value
            arr[k] = np.mod(raw + 1000.0, 4096.0) - 1000.0
        return dataclasses.replace(vol, array=arr, flags=(*vol.flags, "rescale-corrected"))


@dataclass
class IchIndex:
    series: list[IchSeries]
    skips: Skips


def find_split(root: Path) -> tuple[Path, Path]:
    """The label CSV and image folder under ``root`` (stage 2 preferred)."""
    root = Path(root)
    for csv_name, folder in SPLITS:
        if (root / csv_name).is_file() and (root / folder).is_dir():
            return root / csv_name, root / folder
    wanted = " or ".join(f"{c} with {d}/" for c, d in SPLITS)
    raise DatasetError(f"{root}: not an RSNA ICH layout (looked for {wanted})")


def read_labels(path: Path, skips: Skips) -> dict[str, int]:
    """``{image id: bits}`` from the ID,Label CSV (see `label_of`); bad rows counted and left out.

    One small int an image rather than a dict keeps the 750 000 images of
    stage 2 in little memory: bit i is the value of ``LABEL_NAMES[i]``, bit
    6 + i says its row was present.
    """
    labels: dict[str, int] = {}
    bit = {name: i for i, name in enumerate(LABEL_NAMES)}
    for _, row in read_table(path, {"id": ["ID"], "label": ["Label"]}):
        image_id, _, name = row["id"].rpartition("_")
        if name not in bit or not _IMAGE_ID.match(image_id):
            skips.add("label rows with an unreadable ID")
            continue
        value = finite(row["label"])
        if value not in (0.0, 1.0):
            skips.add("label rows with a value other than 0/1")
            continue
        bits = labels.get(image_id, 0)
        i = bit[name]
        if bits >> (6 + i) & 1 and (bits >> i & 1) != int(value):
            skips.add("conflicting duplicate label rows (taken as positive)")
            value = 1.0
        labels[image_id] = bits | 1 << (6 + i) | int(value) << i
    full = (1 << 12) - (1 << 6)
    for bits in labels.values():
        if bits & full != full:
            skips.add("images missing some label rows (missing taken as 0)")
        any_row, any_value = bits >> (6 + bit["any"]) & 1, bits >> bit["any"] & 1
        if any_row and not any_value and bits & ((1 << len(SUBTYPES)) - 1):
            skips.add("images with a subtype but any=0 (taken as positive)")
    return labels


def label_of(bits: int) -> dict[str, int]:
    """``{label name: 0|1}`` of one image from `read_labels`'s bits (absent rows read 0)."""
    return {name: bits >> i & 1 for i, name in enumerate(LABEL_NAMES)}


def _vector(value: Any, n: int) -> np.ndarray | None:
    try:
        v = np.asarray([float(x) for x in value], dtype=np.float64)
    except (TypeError, ValueError):
        return None
    return v if v.shape == (n,) and np.all(np.isfinite(v)) else None


def _text(ds: pydicom.Dataset, keyword: str) -> str:
    """A text element read raw: RSNA's 'UIDs' (ID_...) are not valid UIDs, and converting
    them would log a pydicom warning for every file indexed."""
    try:
        elem = ds.get_item(pydicom.datadict.tag_for_keyword(keyword))
    except Exception:  # noqa: BLE001
        return ""
    value = getattr(elem, "value", None)
    if value is None:
        return ""
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace")
    return str(value).strip("\x00 ").strip()


def _number(ds: pydicom.Dataset, keyword: str) -> float | None:
    try:
        value = ds.get(keyword)
        return None if value is None or value == "" else finite(str(value))
    except Exception:  # noqa: BLE001 - a malformed value is as good as none
        return None


@dataclass
class _Slice:
    path: Path
    image_id: str
    position: np.ndarray
    normal: np.ndarray  # cross(row, column), as load_series computes it
    shape: tuple[int, int]
    wrapped_intercept: float | None  # set where the slice is stored wrapped (module doc)
    ds: pydicom.Dataset


def _read_slice(path: Path, image_id: str, skips: Skips) -> tuple[str, _Slice] | None:
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=HEADER_TAGS)
    except Exception:  # noqa: BLE001 - corrupt/truncated/not DICOM: count, do not crash
        skips.add("unreadable DICOM files")
        return None
    uid = _text(ds, "SeriesInstanceUID")
    if not uid:
        skips.add("files without SeriesInstanceUID")
        return None
    try:
        image_type = [str(v).upper() for v in ds.get("ImageType", []) or []]
    except Exception:  # noqa: BLE001
        image_type = []
    if "LOCALIZER" in image_type:
        skips.add("localizer images")
        return None
    pos = _vector(ds.get("ImagePositionPatient"), 3)
    iop = _vector(ds.get("ImageOrientationPatient"), 6)
    normal = np.cross(iop[:3], iop[3:]) if iop is not None else None
    if pos is None or normal is None or np.linalg.norm(normal) < 0.5:
        skips.add("files without usable ImagePositionPatient/ImageOrientationPatient")
        return None
    rows, cols = _number(ds, "Rows"), _number(ds, "Columns")
    if not rows or not cols:
        skips.add("files without Rows/Columns")
        return None
    wrapped = None
    intercept, slope = _number(ds, "RescaleIntercept"), _number(ds, "RescaleSlope")
    if (_number(ds, "BitsStored") == 12 and _number(ds, "PixelRepresentation") == 0
            and intercept is not None and intercept > -100 and (slope is None or slope == 1.0)):
        wrapped = intercept
    return uid, _Slice(path, image_id, pos, normal, (int(rows), int(cols)), wrapped, ds)


def _order(slices: list[_Slice]) -> list[int] | None:
    """Indices in load_series's order: by position along the first slice's normal.

    load_series takes the normal of the first file it is given; sorting with
    the normal of the slice that then comes first makes the two orders agree
    even where orientations differ slightly between slices.
    """
    pos = np.stack([s.position for s in slices])
    normal = np.mean([s.normal for s in slices], axis=0)
    for _ in range(5):
        order = np.argsort(pos @ normal, kind="stable")
        first = slices[int(order[0])].normal
        if np.array_equal(first, normal):
            return [int(i) for i in order]
        normal = first
    return None


def _groups(ds: pydicom.Dataset) -> dict[str, str]:
    groups: dict[str, str] = {}
    sex = str(ds.get("PatientSex", "") or "").strip().upper()
    if sex in ("M", "F"):
        groups["sex"] = sex
    age = str(ds.get("PatientAge", "") or "").strip().upper()
    m = re.fullmatch(r"(\d{1,3})([DWMY])", age)
    if m:
        per_year = {"D": 365.25, "W": 52.18, "M": 12.0, "Y": 1.0}[m.group(2)]
        groups["age_band"] = age_band(int(m.group(1)) / per_year)
    scanner = " ".join(str(ds.get(k, "") or "").strip() for k in ("Manufacturer", "ManufacturerModelName")).strip()
    if scanner:
        groups["scanner"] = scanner
    thickness = _number(ds, "SliceThickness")
    if thickness and thickness > 0:
        groups["slice_thickness"] = f"{thickness:g} mm"
    return groups


def _series(uid: str, slices: list[_Slice], labels: dict[str, int], skips: Skips) -> IchSeries | None:
    if len({s.shape for s in slices}) > 1:
        skips.add("series with images of different sizes")
        return None
    order = _order(slices)
    if order is None:
        skips.add("series whose slice order cannot be settled (orientation differs between slices)")
        return None
    slices = [slices[i] for i in order]
    depth = np.array([s.position for s in slices]) @ slices[0].normal
    if len(slices) > 1 and np.min(np.diff(depth)) <= 1e-3:
        skips.add("series with two slices at one position")
        return None
    slice_labels: dict[str, list[int]] = {name: [] for name in LABEL_NAMES}
    for z, s in enumerate(slices):
        per = label_of(labels[s.image_id])
        hits = [name for name in SUBTYPES if per.get(name)]
        for name in hits:
            slice_labels[name].append(z)
        if per.get("any") or hits:
            slice_labels["any"].append(z)
    first = slices[0].ds
    return IchSeries(
        series_uid=uid,
        study_uid=_text(first, "StudyInstanceUID"),
        patient_id=_text(first, "PatientID"),
        files=tuple(s.path for s in slices),
        label={"positive": bool(slice_labels["any"]),
               "subtypes": [name for name in SUBTYPES if slice_labels[name]],
               "slice_labels": slice_labels},
        groups=_groups(first),
        wrapped=tuple((z, s.wrapped_intercept) for z, s in enumerate(slices) if s.wrapped_intercept is not None),
        first_position=tuple(float(v) for v in slices[0].position),
    )


def index(root: Path) -> IchIndex:
    """Read the labels and the headers of the labelled images; group and sort them."""
    csv_path, folder = find_split(root)
    skips = Skips(f"RSNA ICH {root}")
    labels = read_labels(csv_path, skips)
    by_series: dict[str, list[_Slice]] = defaultdict(list)
    found: set[str] = set()
    unlabelled = 0
    with os.scandir(folder) as it:
        names = sorted(e.name for e in it if e.name.lower().endswith(".dcm") and e.is_file())
    for name in names:
        image_id = name[:-4]
        if image_id not in labels:
            unlabelled += 1
            continue
        found.add(image_id)
        got = _read_slice(folder / name, image_id, skips)
        if got is not None:
            by_series[got[0]].append(got[1])
    skips.add("images without label rows (test set)", unlabelled)
    skips.add("labelled images with no file", len(labels.keys() - found))
    series = [s for uid in sorted(by_series) if (s := _series(uid, by_series[uid], labels, skips)) is not None]
    return IchIndex(series, skips)


def examples(root: Path, task: str = "ich") -> Iterator[Example]:
    """One ich Example per labelled series, in SeriesInstanceUID order.

    The task was checked by `radtriage.datasets.layouts.examples`.
    """
    idx = index(root)
    idx.skips.log(log)
    for s in idx.series:
        yield Example(id=s.series_uid, task="ich", label=s.label, load=s.load, groups=s.groups)
