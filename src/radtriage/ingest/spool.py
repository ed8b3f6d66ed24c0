"""The spool: received DICOM files on disk, written durably.

A received instance is first *staged*: written under a temporary name in
``.incoming/`` and fsynced, while the caller parses its header. It is then
*placed*: hard-linked under its final name (never replacing a file already
there) and that directory fsynced. After a crash a file is either complete
under its final name or absent; staged leftovers are removed at start-up.
Names come only from validated UIDs (digits and dots) and hashes, never from
anything else a peer sends.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

TMP_SUFFIX = ".part"


class SpoolFullError(OSError):
    """The spool's file system has less free space than the configured reserve."""


@dataclass(frozen=True)
class Staged:
    """An instance written and fsynced under a temporary name."""

    path: Path
    sha256: str
    size: int
    fd: int = -1  # open, holding the writer's lock, until `Spool.discard`


class Spool:
    """Durable file storage under ``root``, one folder per study and series."""

    def __init__(self, root: Path, fsync: bool = True, min_free_bytes: int = 0) -> None:
        self.root = root.resolve()
        self.fsync = fsync
        self.min_free_bytes = min_free_bytes
        self.root.mkdir(parents=True, exist_ok=True)
        self.incoming = self.root / ".incoming"
        self.incoming.mkdir(exist_ok=True)
        self._known_dirs: set[Path] = {self.incoming}

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

    def stage(self, data: bytes) -> Staged:
        """Hash ``data`` and write it durably under a temporary name.

        Runs without the GIL for most of its time (hashing, write, fsync),
        so a caller can parse the header meanwhile.
        """
        self.check_space(len(data))
        sha = hashlib.sha256(data).hexdigest()
        tmp = self.incoming / f"{uuid.uuid4().hex}{TMP_SUFFIX}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)  # live until discarded: see `remove_partials`
            view = memoryview(data)
            while view:
                n = os.write(fd, view)
                view = view[n:]
            if self.fsync:
                os.fsync(fd)
        except BaseException:
            _unlink_quiet(tmp)
            os.close(fd)
            raise
        return Staged(tmp, sha, len(data), fd)

    def place(self, staged: Staged, path: Path) -> tuple[Path, bool]:
        """Give a staged file its final name; return where it is and whether
        this call created ``path`` itself.

        A file already at ``path`` is never replaced: the new one then goes
        beside it, named with its hash (the same name means the same bytes,
        so such a file may be shared and is never removed by a loser of a race).
        """
        self._ensure_dir(path.parent)
        created = True
        try:
            os.link(staged.path, path)
        except FileExistsError:
            created = False
            path = path.with_name(f"{path.stem}.{staged.sha256[:16]}.dcm")
            os.replace(staged.path, path)
        else:
            os.unlink(staged.path)
        if self.fsync:
            _fsync_dir(path.parent)
        return path, created

    def discard(self, staged: Staged) -> None:
        """Remove the staged file if it was not placed, and release its lock; call once per `stage`."""
        _unlink_quiet(staged.path)
        if staged.fd >= 0:
            os.close(staged.fd)

    def write(self, path: Path, data: bytes) -> Path:
        """Stage and place in one step."""
        staged = self.stage(data)
        try:
            return self.place(staged, path)[0]
        finally:
            self.discard(staged)

    def remove_partials(self) -> int:
        """Delete staged files left by a crash (never acknowledged); return how many.

        Another process may share this spool (a running server while `radtriage import` starts, or
        several listeners): a staged file is locked by its writer until it is placed or discarded, and
        the kernel drops the lock when the writer dies, so only unlocked files are removed."""
        n = 0
        for p in self.incoming.glob(f"*{TMP_SUFFIX}"):
            try:
                fd = os.open(p, os.O_RDONLY)
            except FileNotFoundError:
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # a live write
            finally:
                os.close(fd)
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
