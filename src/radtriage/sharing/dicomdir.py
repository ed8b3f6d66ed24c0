"""The shared copy as a zip a PACS imports: the instances in a DICOM File-set with its DICOMDIR (PS3.10, built
by pydicom's FileSet), as media from another hospital arrive on a CD.

The File-set is written to a temporary folder under ``data/shares/.tmp`` (pydicom writes a File-set to a
folder), zipped into memory, and the folder removed before the answer leaves, whatever happens.
"""

from __future__ import annotations

import io
import secrets
import shutil
import zipfile
from pathlib import Path
from typing import Any

import pydicom
from pydicom.fileset import FileSet

from radtriage.sharing.store import Sealed

FILE_SET_ID = "RADTRIAGE SHARE"  # CS, 16 characters at most


def study_zip(sealed: Sealed, manifest: dict[str, Any], tmp_root: Path) -> bytes:
    """Every instance of the share and a DICOMDIR listing them, zipped (stored, not deflated: pixels are dense)."""
    fs = FileSet()
    fs.ID = FILE_SET_ID
    for series in manifest["series"]:
        for inst in series["instances"]:
            fs.add(pydicom.dcmread(io.BytesIO(sealed.read(inst["file"]))))
    tmp_root.mkdir(parents=True, exist_ok=True)
    folder = tmp_root / secrets.token_hex(8)
    try:
        fs.write(folder)
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as zf:
            for path in sorted(p for p in folder.rglob("*") if p.is_file()):
                zf.write(path, path.relative_to(folder).as_posix())
        return buf.getvalue()
    finally:
        shutil.rmtree(folder, ignore_errors=True)
