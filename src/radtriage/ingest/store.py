"""`store_instance()`: the one way an instance enters radtriage.

The C-STORE SCP, STOW-RS and folder import all call it. It checks the
header, writes the bytes exactly as received to the spool (fsynced), indexes
them, and only then returns; any failure raises `InstanceRejected` with a
reason that maps to a DIMSE status or an HTTP problem. Log lines carry UIDs,
never patient identifiers.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import time
from dataclasses import dataclass

from sqlalchemy.exc import IntegrityError, OperationalError

from radtriage.db import Database
from radtriage.db import access
from radtriage.ingest.metrics import IngestMetrics
from radtriage.ingest.parse import InstanceRejected, RejectReason, parse_part10
from radtriage.ingest.spool import Spool, SpoolFullError

log = logging.getLogger("radtriage.ingest")


@dataclass(frozen=True)
class Origin:
    """Where an instance came from: for the index, the audit and the logs."""

    source: str  # "dimse" | "stow" | "import"
    calling_ae: str | None = None
    association_id: str | None = None


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
    ) -> StoreResult:
        """Store one Part 10 instance given as byte ``chunks`` (preamble+meta, data set).

        ``expected_*`` come from the request (the C-STORE command, the STOW-RS
        path); an instance that does not match them is refused.
        """
        t0 = time.perf_counter()
        try:
            result = self._store(
                chunks, origin, expected_sop_class, expected_sop_instance, expected_study
            )
        except InstanceRejected as rej:
            self.metrics.rejections.labels(origin.source, rej.reason.value).inc()
            log.warning(
                "rejected instance: source=%s calling_ae=%s reason=%s detail=%s sop_instance_uid=%s",
                origin.source,
                origin.calling_ae,
                rej.reason.value,
                rej.detail,
                expected_sop_instance,
            )
            raise
        self.metrics.store_latency.labels(origin.source).observe(time.perf_counter() - t0)
        self.metrics.instances.labels(origin.source, result.outcome).inc()
        return result

    def _store(
        self,
        chunks: list[bytes],
        origin: Origin,
        expected_sop_class: str | None,
        expected_sop_instance: str | None,
        expected_study: str | None,
    ) -> StoreResult:
        size = sum(len(c) for c in chunks)
        if self.max_bytes is not None and size > self.max_bytes:
            raise InstanceRejected(RejectReason.TOO_LARGE, f"{size} bytes over the limit")
        data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        _ds, hdr = parse_part10(data)
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
        sha = hashlib.sha256(data).hexdigest()
        for _attempt in range(3):
            try:
                return self._write_and_index(data, size, sha, hdr, origin)
            except IntegrityError:
                continue  # another writer indexed it first: look again
        raise InstanceRejected(RejectReason.INTERNAL, "index kept changing under us")

    def _write_and_index(self, data, size, sha, hdr, origin) -> StoreResult:  # noqa: ANN001
        def result(outcome: str, path: str) -> StoreResult:
            return StoreResult(
                outcome, hdr.study_uid, hdr.series_uid, hdr.sop_instance_uid, hdr.sop_class_uid, path
            )

        try:
            existing = access.find_instance(self.db, hdr.sop_instance_uid)
            if existing is not None and existing.sha256 == sha:
                return result("duplicate", existing.path)
            path = self.spool.instance_path(hdr.study_uid, hdr.series_uid, hdr.sop_instance_uid)
            if existing is not None:
                # keep the newer, and the older file under its own name
                path = path.with_name(f"{hdr.sop_instance_uid}.{sha[:12]}.dcm")
            self.spool.write(path, [data])
            self.metrics.bytes.labels(origin.source).inc(size)
            access.record_instance(
                self.db,
                access.NewInstance(
                    study_uid=hdr.study_uid,
                    series_uid=hdr.series_uid,
                    sop_instance_uid=hdr.sop_instance_uid,
                    sop_class_uid=hdr.sop_class_uid,
                    transfer_syntax_uid=hdr.transfer_syntax_uid,
                    instance_number=hdr.instance_number,
                    is_localizer=hdr.is_localizer,
                    path=str(path),
                    size_bytes=size,
                    sha256=sha,
                    calling_ae=origin.calling_ae,
                    source=origin.source,
                    association_id=origin.association_id,
                    study_fields=hdr.study_fields,
                    series_header=hdr.series_header,
                    storage_dir=str(path.parent),
                ),
                replaces=existing,
            )
        except IntegrityError:
            raise
        except SpoolFullError as exc:
            raise InstanceRejected(RejectReason.NO_SPACE, "spool below free-space reserve") from exc
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise InstanceRejected(RejectReason.NO_SPACE, "no space left on device") from exc
            raise InstanceRejected(RejectReason.INTERNAL, f"storage error {exc.errno}") from exc
        except OperationalError as exc:
            raise InstanceRejected(RejectReason.INTERNAL, "database unavailable") from exc
        if existing is not None:
            log.info(
                "replaced instance sop_instance_uid=%s old_sha=%s new_sha=%s",
                hdr.sop_instance_uid,
                existing.sha256[:12],
                sha[:12],
            )
            return result("replaced", str(path))
        return result("stored", str(path))
