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
        staging = self.open_staging(len(data))
        try:
            staging.write(data)
        except BaseException:
            staging.abort()
            raise
        return staging.finish()

    def open_staging(self, expected_bytes: int = 0) -> "StagingFile":
        """A temporary file to receive an instance in pieces as they arrive (STOW-RS
        streams each part here instead of holding it in memory)."""
        self.check_space(expected_bytes)
        return StagingFile(self, self.incoming / f"{uuid.uuid4().hex}{TMP_SUFFIX}")

    def restage(self, staged: Staged) -> Staged:
        """Another temporary name for the same staged file (a hard link), so that one
        attempt at placing it can consume its copy and a retry still has the file. The
        link shares the file and so the lock of ``staged``, which must outlive it."""
        tmp = self.incoming / f"{uuid.uuid4().hex}{TMP_SUFFIX}"
        os.link(staged.path, tmp)
        return Staged(tmp, staged.sha256, staged.size)

    def place(self, staged: Staged, path: Path) -> tuple[Path, bool]:
        """Give a staged file its final name; return where it is and whether
        this call created ``path`` itself.

        A file already at ``path`` is never replaced. When it holds these very
        bytes (left there by a process killed after placing and before
        indexing, say) it is shared rather than copied again; otherwise the new
        one goes beside it, named with its hash (the same name means the same
        bytes, so such a file may be shared and is never removed by a loser of
        a race).
        """
        self._ensure_dir(path.parent)
        created = True
        try:
            os.link(staged.path, path)
        except FileExistsError:
            created = False
            if _sha256_of(path) != staged.sha256:
                path = path.with_name(f"{path.stem}.{staged.sha256[:16]}.dcm")
                os.replace(staged.path, path)
            else:
                os.unlink(staged.path)
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


class StagingFile:
    """An instance being received: written under a temporary name as its bytes arrive,
    hashed on the way; `finish` fsyncs it and gives the `Staged` file, `abort` removes it.

    The spool's free space is checked again every ``SPACE_CHECK_BYTES`` written, so a
    long upload stops at the reserve instead of filling the disk.
    """

    SPACE_CHECK_BYTES = 16 * 1024 * 1024

    def __init__(self, spool: Spool, path: Path) -> None:
        self.spool = spool
        self.path = path
        self.size = 0
        self._sha = hashlib.sha256()
        self._unchecked = 0
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)  # live until discarded: see `Spool.remove_partials`
        except BaseException:
            _unlink_quiet(path)
            os.close(fd)
            raise
        self._fd: int | None = fd

    def write(self, data: bytes | memoryview) -> None:
        if self._fd is None:
            raise ValueError("staging file already closed")
        self._unchecked += len(data)
        if self._unchecked >= self.SPACE_CHECK_BYTES:
            self.spool.check_space(len(data))
            self._unchecked = 0
        self._sha.update(data)
        view = memoryview(data)
        while view:
            n = os.write(self._fd, view)
            view = view[n:]
        self.size += len(data)

    def finish(self) -> Staged:
        """Make the file durable and hand it over, still locked, to be placed and then
        `Spool.discard`-ed (which releases the lock)."""
        if self._fd is None:
            raise ValueError("staging file already closed")
        if self.spool.fsync:
            try:
                os.fsync(self._fd)
            except BaseException:
                self.abort()
                raise
        fd, self._fd = self._fd, None
        return Staged(self.path, self._sha.hexdigest(), self.size, fd)

    def abort(self) -> None:
        """Remove the file and release it (over the limit, cut short, or refused); idempotent."""
        fd, self._fd = self._fd, None
        _unlink_quiet(self.path)
        if fd is not None:
            os.close(fd)


def _sha256_of(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


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
