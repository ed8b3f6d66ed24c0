"""The spool: received DICOM files on disk, written durably.

A file is written under a temporary name in its final directory, flushed
and fsynced, renamed into place and its directory fsynced, so that after a
crash a file is either complete under its final name or absent. Names come
only from validated UIDs (digits and dots), never from anything else a peer
sends.
"""

from __future__ import annotations

import errno
import os
import shutil
import uuid
from pathlib import Path

TMP_SUFFIX = ".part"


class SpoolFullError(OSError):
    """The spool's file system has less free space than the configured reserve."""


class Spool:
    """Durable file storage under ``root``, one folder per study and series."""

    def __init__(self, root: Path, fsync: bool = True, min_free_bytes: int = 0) -> None:
        self.root = root.resolve()
        self.fsync = fsync
        self.min_free_bytes = min_free_bytes
        self.root.mkdir(parents=True, exist_ok=True)
        self._known_dirs: set[Path] = set()

    def series_dir(self, study_uid: str, series_uid: str) -> Path:
        return self.root / study_uid / series_uid

    def instance_path(self, study_uid: str, series_uid: str, sop_uid: str) -> Path:
        return self.series_dir(study_uid, series_uid) / f"{sop_uid}.dcm"

    def check_space(self, incoming: int) -> None:
        free = shutil.disk_usage(self.root).free
        if free - incoming < self.min_free_bytes:
            raise SpoolFullError(errno.ENOSPC, "spool below its free-space reserve")

    def _ensure_dir(self, directory: Path) -> None:
        if directory in self._known_dirs:
            return
        missing = []
        d = directory
        while not d.exists():
            missing.append(d)
            d = d.parent
        directory.mkdir(parents=True, exist_ok=True)
        if self.fsync:
            # make each new directory entry durable in its parent
            for d in reversed(missing):
                _fsync_dir(d.parent)
        self._known_dirs.add(directory)

    def write(self, path: Path, chunks: list[bytes | memoryview]) -> int:
        """Write ``chunks`` to ``path`` atomically and durably; return the size."""
        size = sum(len(c) for c in chunks)
        self.check_space(size)
        self._ensure_dir(path.parent)
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}{TMP_SUFFIX}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
        try:
            try:
                for chunk in chunks:
                    view = memoryview(chunk)
                    while view:
                        n = os.write(fd, view)
                        view = view[n:]
                if self.fsync:
                    os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, path)
        except BaseException:
            _unlink_quiet(tmp)
            raise
        if self.fsync:
            _fsync_dir(path.parent)
        return size

    def keep_replaced(self, path: Path, sha256: str) -> Path:
        """Move a file that is about to be replaced aside; return its new path."""
        target = self.root / "replaced" / f"{path.stem}.{sha256[:16]}.dcm"
        self._ensure_dir(target.parent)
        os.replace(path, target)
        if self.fsync:
            _fsync_dir(target.parent)
            _fsync_dir(path.parent)
        return target

    def remove_partials(self) -> int:
        """Delete temporary files left by a crash; return how many."""
        n = 0
        for p in self.root.rglob(f"*{TMP_SUFFIX}"):
            _unlink_quiet(p)
            n += 1
        return n


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _unlink_quiet(p: Path) -> None:
    try:
        p.unlink()
    except FileNotFoundError:
        pass
