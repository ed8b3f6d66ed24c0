"""RSNA Pediatric Bone Age Challenge (2017) as downloaded.

Layouts accepted (column names compared without case, spaces or punctuation)::

    root/boneage-training-dataset.csv        id,boneage,male   (male True/False)
    root/boneage-training-dataset/<id>.png   (or .../boneage-training-dataset/boneage-training-dataset/<id>.png)

    root/Bone Age Validation Set/Validation Dataset.csv     Image ID,male,Bone Age (months)
    root/Bone Age Validation Set/boneage-validation-dataset-{1,2}/<id>.png

    root/Bone Age Training Set/train.csv  (+ images below it), or ``root`` being one of those folders

A table is any CSV in ``root`` or one folder below it whose header has an id,
a bone age and a sex column; its images are the PNGs below the table's
folder, matched by file name. Tables without bone ages (the test set's
``Case ID,Sex``) are not tables here. Rows that cannot be read, ids without
an image and image names found twice are counted and logged once.

The PNGs are 8-bit grey with bone bright (MONOCHROME2-like) and carry no
pixel spacing: volumes get spacing (1, 1) and the flag ``"spacing-unknown"``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from radtriage.datasets import Example, age_band
from radtriage.datasets._tables import DatasetError, Skips, finite, header_matches, logged, read_table
from radtriage.imaging.volume import Volume, VolumeError

log = logging.getLogger(__name__)

COLUMNS = {
    "id": ["id", "Image ID", "image_id", "Case ID"],
    "months": ["boneage", "Bone Age (months)", "bone_age", "bone age months", "Ground truth bone age (months)"],
    "sex": ["male", "sex", "gender"],
}
KNOWN_TABLES = ("boneage-training-dataset.csv", "Bone Age Validation Set/Validation Dataset.csv",
                "Bone Age Training Set/train.csv")
MALE = {"true", "1", "1.0", "yes", "y", "m", "male"}
FEMALE = {"false", "0", "0.0", "no", "n", "f", "female"}
_ID = re.compile(r"^[0-9A-Za-z_-]{1,64}$")


def find_tables(root: Path) -> list[Path]:
    """CSVs in ``root`` or one folder down with id, bone age and sex columns."""
    root = Path(root)
    found = sorted(root.glob("*.csv")) + sorted(root.glob("*/*.csv"))
    return [p for p in found if p.is_file() and header_matches(p, COLUMNS)]


def is_layout(root: Path) -> bool:
    return bool(find_tables(root))


def parse_sex(text: str) -> str | None:
    """'M'/'F' from the ``male`` column (True/False) or a sex column (M/F, male/female)."""
    t = text.strip().lower()
    return "M" if t in MALE else "F" if t in FEMALE else None


@dataclass(frozen=True)
class Radiograph:
    id: str
    png: Path
    months: float
    sex: str

    def load(self) -> Volume:
        return read_png(self.png, meta={"PatientSex": self.sex, "Modality": "CR"})


def read_png(path: Path, meta: dict | None = None) -> Volume:
    """A grey (or RGB/grey+alpha, made grey) PNG as a 2D float32 Volume without known spacing."""
    try:
        img = sitk.ReadImage(str(path))
    except RuntimeError as e:
        raise VolumeError(f"{path}: SimpleITK cannot read it ({str(e).strip().splitlines()[-1]})") from None
    if img.GetDimension() != 2:
        raise VolumeError(f"{path}: expected a 2D image, got {img.GetDimension()}D")
    arr = sitk.GetArrayFromImage(img).astype(np.float32)
    if arr.ndim == 3:  # (y, x, components)
        comps = arr.shape[2]
        arr = arr[..., :3].mean(axis=2) if comps >= 3 else arr[..., 0]
    if arr.ndim != 2 or arr.size == 0:
        raise VolumeError(f"{path}: not a 2D image")
    return Volume(np.ascontiguousarray(arr, dtype=np.float32), (1.0, 1.0), meta=dict(meta or {}),
                  flags=("spacing-unknown",))


def _images_below(folder: Path) -> tuple[dict[str, Path], set[str]]:
    """PNG stems below ``folder`` and the stems found more than once (ambiguous)."""
    images: dict[str, Path] = {}
    twice: set[str] = set()
    for p in sorted(folder.rglob("*.png")) + sorted(folder.rglob("*.PNG")):
        if p.stem in images and images[p.stem] != p:
            twice.add(p.stem)
        images.setdefault(p.stem, p)
    return images, twice


def index(root: Path) -> tuple[list[Radiograph], Skips]:
    root = Path(root)
    tables = find_tables(root)
    if not tables:
        raise DatasetError(f"{root}: not an RSNA bone age layout (looked for a CSV with id, bone age and sex "
                           f"columns in it or one folder down, e.g. {' or '.join(KNOWN_TABLES)})")
    skips = Skips(f"RSNA bone age {root}")
    out: list[Radiograph] = []
    seen: set[str] = set()
    for table in tables:
        images, twice = _images_below(table.parent)
        for _, row in read_table(table, COLUMNS):
            rid = re.sub(r"\.png$", "", row["id"], flags=re.IGNORECASE)
            if rid.endswith(".0") and rid[:-2].isdigit():  # ids written as floats by a spreadsheet
                rid = rid[:-2]
            months = finite(row["months"])
            sex = parse_sex(row["sex"])
            if not _ID.match(rid):
                skips.add("rows with an unreadable id")
            elif months is None or not 0 <= months <= 300:
                skips.add("rows with an unreadable bone age (months)")
            elif sex is None:
                skips.add("rows with an unreadable sex")
            elif rid in seen:
                skips.add("ids listed twice (first kept)")
            elif rid in twice:
                skips.add("ids with more than one image file")
            elif rid not in images:
                skips.add("ids with no image file")
            else:
                seen.add(rid)
                out.append(Radiograph(rid, images[rid], months, sex))
    return out, skips


def examples(root: Path, task: str = "bone_age") -> Iterator[Example]:
    """One bone_age Example per labelled radiograph, in table then row order.

    The task was checked by `radtriage.datasets.layouts.examples`.
    """
    for r in logged(index(root), log):
        yield Example(
            id=r.id,
            task="bone_age",
            label={"bone_age_months": r.months, "sex": r.sex, "chronological_age_months": None},
            load=r.load,
            groups={"sex": r.sex, "age_band": age_band(r.months / 12.0)},
        )
