"""`radtriage import DIR`: files and DICOMDIR media (CD/USB) into the store.

Every file under the folder is tried, recursively; a DICOMDIR, when present,
is read for the files it references (media often name files without an
extension, in upper case). Files that are not DICOM are skipped and reported;
DICOMDIR files themselves are not stored as instances.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from pydicom import dcmread
from pydicom.errors import InvalidDicomError

from radtriage.ingest.parse import InstanceRejected
from radtriage.ingest.store import InstanceStore, Origin

log = logging.getLogger("radtriage.import")
MEDIA_DIRECTORY_STORAGE = "1.2.840.10008.1.3.10"


@dataclass
class ImportReport:
    stored: int = 0
    duplicates: int = 0
    replaced: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, why)
    rejected: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)

    def summary(self) -> str:
        reasons = Counter(r for _, r in self.rejected)
        return (
            f"stored {self.stored}, duplicates {self.duplicates}, replaced {self.replaced}, "
            f"skipped {len(self.skipped)} (not DICOM), rejected {len(self.rejected)}"
            + (f" {dict(reasons)}" if reasons else "")
        )


def _is_part10(head: bytes) -> bool:
    return len(head) >= 132 and head[128:132] == b"DICM"


def _dicomdir_files(dicomdir: Path) -> list[Path]:
    """Files referenced by a DICOMDIR (paths resolved inside its folder only)."""
    root = dicomdir.parent.resolve()
    try:
        ds = dcmread(dicomdir)
    except (InvalidDicomError, OSError, ValueError):
        return []
    out = []
    for rec in ds.get("DirectoryRecordSequence", []):
        parts = rec.get("ReferencedFileID")
        if not parts:
            continue
        parts = [parts] if isinstance(parts, str) else list(parts)
        p = (root.joinpath(*parts)).resolve()
        if p.is_relative_to(root):  # a hostile DICOMDIR cannot point outside its medium
            out.append(p)
    return out


def candidate_files(folder: Path) -> list[Path]:
    """Every regular file under ``folder`` plus those a DICOMDIR names, each once."""
    seen: dict[Path, None] = {}
    for p in sorted(folder.rglob("*")):
        if p.is_file() and not p.is_symlink():
            seen.setdefault(p.resolve())
    for d in [p for p in list(seen) if p.name.upper() == "DICOMDIR"]:
        for f in _dicomdir_files(d):
            if f.is_file():
                seen.setdefault(f)
    return list(seen)


def import_folder(store: InstanceStore, folder: Path) -> ImportReport:
    """Store every DICOM instance found under ``folder``."""
    report = ImportReport()
    origin = Origin(source="import")
    for path in candidate_files(folder):
        try:
            data = path.read_bytes()
        except OSError as exc:
            report.skipped.append((str(path), f"unreadable ({exc.strerror})"))
            continue
        if not _is_part10(data[:132]):
            report.skipped.append((str(path), "not a DICOM Part 10 file"))
            continue
        if path.name.upper() == "DICOMDIR" or MEDIA_DIRECTORY_STORAGE.encode() in data[:512]:
            report.skipped.append((str(path), "DICOMDIR (index, not an instance)"))
            continue
        try:
            result = store.store_instance([data], origin)
        except InstanceRejected as rej:
            report.rejected.append((str(path), rej.reason.value))
            continue
        if result.outcome == "stored":
            report.stored += 1
        elif result.outcome == "duplicate":
            report.duplicates += 1
        else:
            report.replaced += 1
    log.info("import of a folder finished: %s", report.summary())
    return report
