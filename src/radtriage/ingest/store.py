"""`store_instance()`: the one way an instance enters radtriage.

The C-STORE SCP, STOW-RS and folder import all call it. It checks the
header, writes the bytes exactly as received to the spool (fsynced), indexes
them, and only then returns; any failure raises `InstanceRejected` with a
reason that maps to a DIMSE status or an HTTP problem. Log lines carry UIDs,
never patient identifiers.
"""

from __future__ import annotations

import errno
import logging
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.exc import IntegrityError, OperationalError

from radtriage.db import Database
from radtriage.db import conflicts, instances
from radtriage.db.instances import Origin
from radtriage.ingest.metrics import IngestMetrics
from radtriage.ingest.parse import InstanceHeader, InstanceRejected, RejectReason, parse_part10
from radtriage.ingest.sameness import same_dataset
from radtriage.ingest.spool import Spool, SpoolFullError, Staged

log = logging.getLogger("radtriage.ingest")


@dataclass(frozen=True)
class StoreResult:
    outcome: str  # "stored" | "duplicate" | "replaced"
    study_uid: str
    series_uid: str
    sop_instance_uid: str
    sop_class_uid: str
    path: str


class InstanceStore:
    """Holds what `store_instance` needs: the database, the spool, the metrics."""

    def __init__(
        self,
        db: Database,
        spool: Spool,
        metrics: IngestMetrics,
        max_bytes: int | None = None,
    ) -> None:
        self.db = db
        self.spool = spool
        self.metrics = metrics
        self.max_bytes = max_bytes

    def store_instance(
        self,
        chunks: list[bytes],
        origin: Origin,
        expected_sop_class: str | None = None,
        expected_sop_instance: str | None = None,
        expected_study: str | None = None,
        *,
        streamed: Staged | None = None,
    ) -> StoreResult:
        """Store one Part 10 instance given as byte ``chunks`` (preamble+meta, data set),
        or as ``streamed``, a file already written to the spool as it arrived
        (`Spool.open_staging`, STOW-RS); that file is consumed: placed or removed.

        ``expected_*`` come from the request (the C-STORE command, the STOW-RS
        path); an instance that does not match them is refused.
        """
        t0 = time.perf_counter()
        try:
            result = self._store(
                chunks, origin, expected_sop_class, expected_sop_instance, expected_study, streamed
            )
        except InstanceRejected as rej:
            self.note_rejection(origin, rej, expected_sop_instance)
            raise
        finally:
            if streamed is not None:
                self.spool.discard(streamed)
        self.metrics.store_latency.labels(origin.source).observe(time.perf_counter() - t0)
        self.metrics.instances.labels(origin.source, result.outcome).inc()
        return result

    def note_rejection(self, origin: Origin, rej: InstanceRejected, sop_instance_uid: str | None) -> None:
        """Count a refused instance and log why (UIDs and reasons only, never PHI)."""
        self.metrics.rejections.labels(origin.source, rej.reason.value).inc()
        log.warning(
            "rejected instance: source=%s calling_ae=%s reason=%s detail=%s sop_instance_uid=%s",
            origin.source,
            origin.calling_ae,
            rej.reason.value,
            rej.detail,
            sop_instance_uid,
        )

    def _store(
        self,
        chunks: list[bytes],
        origin: Origin,
        expected_sop_class: str | None,
        expected_sop_instance: str | None,
        expected_study: str | None,
        streamed: Staged | None = None,
    ) -> StoreResult:
        size = streamed.size if streamed is not None else sum(len(c) for c in chunks)
        if self.max_bytes is not None and size > self.max_bytes:
            raise InstanceRejected(RejectReason.TOO_LARGE, f"{size} bytes over the limit")
        try:
            if streamed is not None:
                data = streamed.path.read_bytes()  # within the size limit, checked above
            else:
                data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
            hdr = self._check(data, expected_sop_class, expected_sop_instance, expected_study)
            for _attempt in range(3):
                # placing consumes a staged name: a streamed file gets a fresh link per attempt
                staged = self.spool.restage(streamed) if streamed is not None else self.spool.stage(data)
                try:
                    return self._index(staged, hdr, origin)
                except IntegrityError:
                    continue  # a concurrent writer indexed it first: look again
                finally:
                    self.spool.discard(staged)  # a no-op once placed
            raise InstanceRejected(RejectReason.INTERNAL, "index kept changing under us")
        except InstanceRejected:
            raise
        except Exception as exc:  # noqa: BLE001 - becomes a rejection with a reason
            raise _as_rejection(exc) from exc

    def _check(
        self,
        data: bytes,
        expected_sop_class: str | None,
        expected_sop_instance: str | None,
        expected_study: str | None,
    ) -> InstanceHeader:
        _ds, hdr = parse_part10(data, max_inflated=self.max_bytes)
        if expected_sop_class is not None and hdr.sop_class_uid != expected_sop_class:
            raise InstanceRejected(
                RejectReason.SOP_MISMATCH,
                f"data set SOP Class {hdr.sop_class_uid} != request {expected_sop_class}",
            )
        if expected_sop_instance is not None and hdr.sop_instance_uid != expected_sop_instance:
            raise InstanceRejected(
                RejectReason.SOP_MISMATCH,
                f"data set SOP Instance {hdr.sop_instance_uid} != request {expected_sop_instance}",
            )
        if expected_study is not None and hdr.study_uid != expected_study:
            raise InstanceRejected(RejectReason.SOP_MISMATCH, "instance is not of the study addressed")
        return hdr

    def _index(self, staged: Staged, hdr: InstanceHeader, origin: Origin) -> StoreResult:
        """Place the staged file and index it, in one database transaction.

        An instance that contradicts the index is held for an administrator and refused
        (PATIENT_MISMATCH or UID_CONFLICT); one that holds the same data set as the stored copy,
        whatever its encoding, is a duplicate.
        """
        placed: list[tuple[Path, bool]] = []
        same_as: str | None = None  # the stored copy's hash, when it holds this data set in other bytes
        compared = False

        def prepare(existing: instances.StoredInstance | None) -> instances.NewInstance | None:
            if existing is not None and Path(existing.path).exists():
                if existing.sha256 in (staged.sha256, same_as):
                    return None  # the same instance again (these bytes, or another encoding of it): stored once
                if not compared:
                    raise _CompareFirst(existing)  # decoding waits outside the write transaction
            primary = self.spool.instance_path(hdr.study_uid, hdr.series_uid, hdr.sop_instance_uid)
            path, created = self.spool.place(staged, primary)
            placed.append((path, created))
            return instances.NewInstance(hdr, str(path), staged.size, staged.sha256, origin)

        try:
            try:
                written, existing = instances.index_instance(self.db, hdr, prepare)
            except _CompareFirst as other:  # the UID again with other bytes: the same data set?
                compared = True
                if same_dataset(Path(other.stored.path), staged.path):
                    same_as = other.stored.sha256
                    log.info("duplicate instance in another encoding: sop_instance_uid=%s", hdr.sop_instance_uid)
                written, existing = instances.index_instance(self.db, hdr, prepare)
        except instances.StoreConflict as conflict:
            raise self._refuse(conflict, staged, placed, hdr, origin) from None
        except BaseException:
            for path, created in placed:
                if created:  # ours alone, and not indexed
                    path.unlink(missing_ok=True)
            raise

        def result(outcome: str, path: str) -> StoreResult:
            return StoreResult(
                outcome, hdr.study_uid, hdr.series_uid, hdr.sop_instance_uid, hdr.sop_class_uid, path
            )

        if written is None:
            assert existing is not None
            return result("duplicate", existing.path)
        self.metrics.bytes.labels(origin.source).inc(staged.size)
        if existing is None:
            return result("stored", written.path)
        log.info(
            "replaced instance sop_instance_uid=%s old_sha=%s new_sha=%s",
            hdr.sop_instance_uid,
            existing.sha256[:12],
            staged.sha256[:12],
        )
        return result("replaced", written.path)


    def _refuse(self, conflict: instances.StoreConflict, staged: Staged, placed: list[tuple[Path, bool]],
                hdr: InstanceHeader, origin: Origin) -> InstanceRejected:
        """Hold a conflicting instance for an administrator, list and audit it; the rejection to raise."""
        held = self.spool.root / ".conflicts" / f"{uuid.uuid4().hex}.dcm"
        mine = [path for path, created in placed if created]
        if mine:  # placed before the conflict showed: move our copy aside
            held.parent.mkdir(exist_ok=True)
            mine[0].replace(held)
        else:
            held = self.spool.place(staged, held)[0]
        conflict_id, new = conflicts.record(self.db, conflicts.Refused(
            conflict=conflict, study_uid=hdr.study_uid, series_uid=hdr.series_uid,
            sop_instance_uid=hdr.sop_instance_uid, sop_class_uid=hdr.sop_class_uid,
            incoming=hdr.study_fields(), path=str(held), sha256=staged.sha256, size_bytes=staged.size,
            source=origin.source, calling_ae=origin.calling_ae))
        if not new:
            held.unlink(missing_ok=True)  # the same bytes are held for that conflict already
        reason = (RejectReason.PATIENT_MISMATCH if conflict.kind == instances.StoreConflict.PATIENT_MISMATCH
                  else RejectReason.UID_CONFLICT)
        return InstanceRejected(reason, f"conflict {conflict_id}: {conflict}")


class _CompareFirst(Exception):
    """Raised by `prepare` (nothing written yet) so that two encodings are compared outside the transaction."""

    def __init__(self, stored: instances.StoredInstance) -> None:
        super().__init__(stored.sop_instance_uid)
        self.stored = stored


def _as_rejection(exc: Exception) -> InstanceRejected:
    """Storage and database failures become rejections with their own reason."""
    if isinstance(exc, SpoolFullError):
        return InstanceRejected(RejectReason.NO_SPACE, "spool below free-space reserve")
    if isinstance(exc, OSError):
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return InstanceRejected(RejectReason.NO_SPACE, "no space left on device")
        return InstanceRejected(RejectReason.INTERNAL, f"storage error {exc.errno}")
    if isinstance(exc, OperationalError):
        return InstanceRejected(RejectReason.INTERNAL, "database unavailable")
    log.exception("unexpected error storing an instance")
    return InstanceRejected(RejectReason.INTERNAL, type(exc).__name__)
