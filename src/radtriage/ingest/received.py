"""C-STORE data sets written to disk as they arrive, never held whole in memory.

By default pynetdicom gathers each data set in memory; the handler then copied
it twice more. With ``STORE_RECV_CHUNKED_DATASET`` pynetdicom writes it to a
temporary file instead, created by ``NamedTemporaryFile`` in the system's
temporary folder, and leaves that file behind when the sender goes away
mid-transfer. Here that file is created in the listener's spool (``.incoming``,
locked like any staged file, so `Spool.remove_partials` leaves a live one alone),
keeps at most the size limit (the rest of an over-long data set is counted, not
written), and is removed when its association ends. The handler copies the data
set behind radtriage's own File Meta into a spool staging file, piece by piece.
"""

from __future__ import annotations

import errno
import fcntl
import os
import tempfile
import threading
from pathlib import Path
from typing import Any

import pynetdicom.dimse_messages
from pynetdicom import _config as pynetdicom_config

from radtriage.ingest.parse import InstanceRejected, RejectReason, file_meta_extent
from radtriage.ingest.spool import TMP_SUFFIX, Spool, SpoolFullError, Staged

COPY_PIECE = 1024 * 1024
META_PEEK = 64 * 1024  # pynetdicom's File Meta group is a few hundred bytes
META_ALLOWANCE = 64 * 1024  # kept beyond the limit, so that an over-long data set shows as such
NO_SPACE_ERRNOS = (errno.ENOSPC, errno.EDQUOT)


class ReceivedFiles:
    """Where one listener's C-STORE data sets are received, and how much of each is kept."""

    def __init__(self, spool: Spool, max_bytes: int | None) -> None:
        self.spool = spool
        self.cap = None if max_bytes is None else max_bytes + META_ALLOWANCE

    def open(self, *args: Any, **kwargs: Any) -> "_CappedFile":
        kwargs.update(dir=self.spool.incoming, prefix="dimse-", suffix=TMP_SUFFIX)
        f = tempfile.NamedTemporaryFile(*args, **kwargs)
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)  # a live write, until closed
        return _CappedFile(f, self.cap)

    def stage(self, header: bytes, received: Path, max_bytes: int | None) -> Staged:
        """``header`` and the data set in ``received`` (after pynetdicom's File Meta), copied
        piece by piece to a spool staging file; refused when over ``max_bytes``."""
        with open(received, "rb") as f:
            start, _ = file_meta_extent(f.read(META_PEEK))
            total = len(header) + os.fstat(f.fileno()).st_size - start
            if max_bytes is not None and total > max_bytes:
                raise InstanceRejected(RejectReason.TOO_LARGE, f"over {max_bytes} bytes")
            f.seek(start)
            try:
                staging = self.spool.open_staging(total)
            except SpoolFullError:
                raise InstanceRejected(RejectReason.NO_SPACE, "spool below free-space reserve") from None
            try:
                staging.write(header)
                while piece := f.read(COPY_PIECE):
                    staging.write(piece)
                return staging.finish()
            except BaseException as exc:
                staging.abort()
                if isinstance(exc, OSError) and (isinstance(exc, SpoolFullError) or exc.errno in NO_SPACE_ERRNOS):
                    raise InstanceRejected(RejectReason.NO_SPACE, "no space left for the instance") from None
                raise


class _CappedFile:
    """pynetdicom's temporary file (it writes, flushes ``.file``, reads ``.name``, closes):
    bytes past ``cap`` are counted as written and dropped."""

    def __init__(self, f: Any, cap: int | None) -> None:
        self._f = f
        self.file = f.file
        self.name = f.name
        self._room = cap

    def write(self, data: bytes) -> int:
        if self._room is None:
            return self._f.write(data)
        kept = data[: self._room]
        if kept:
            self._f.write(kept)
            self._room -= len(kept)
        return len(data)

    def close(self) -> None:
        self._f.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._f, name)


def discard_partial(assoc: Any) -> None:
    """Remove the file of a data set whose transfer its association ended (pynetdicom keeps it)."""
    message = getattr(getattr(assoc, "dimse", None), "message", None)
    f = getattr(message, "_data_set_file", None)
    if f is None:
        return
    f.close()
    Path(f.name).unlink(missing_ok=True)


def _named_temporary_file(*args: Any, **kwargs: Any) -> Any:
    """pynetdicom's ``NamedTemporaryFile``: in the spool of the listener whose association
    is receiving (pynetdicom calls it from that association's DUL thread)."""
    assoc = getattr(threading.current_thread(), "assoc", None)
    files = getattr(getattr(assoc, "_server", None), "received_files", None)
    if files is None:  # not a radtriage listener: pynetdicom's own behaviour
        return tempfile.NamedTemporaryFile(*args, **kwargs)
    return files.open(*args, **kwargs)


def receive_to_disk() -> None:
    """Make pynetdicom write received C-STORE data sets to files (process-wide)."""
    pynetdicom_config.STORE_RECV_CHUNKED_DATASET = True
    pynetdicom.dimse_messages.NamedTemporaryFile = _named_temporary_file  # type: ignore[assignment]
