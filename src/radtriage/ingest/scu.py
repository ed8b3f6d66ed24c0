"""`radtriage send`: a C-STORE SCU (pynetdicom) that sends files to a peer."""

from __future__ import annotations

import socket
from dataclasses import dataclass, field
from pathlib import Path

from pydicom import dcmread
from pydicom.errors import InvalidDicomError
from pynetdicom import AE, evt
from pynetdicom.presentation import build_context


@dataclass
class SendReport:
    sent: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)


def _files(paths: list[Path]) -> list[Path]:
    out: list[Path] = []
    for p in paths:
        if p.is_dir():
            out.extend(sorted(f for f in p.rglob("*") if f.is_file()))
        else:
            out.append(p)
    return out


def _nodelay(event: evt.Event) -> None:
    sock = event.assoc.dul.socket.socket if event.assoc.dul.socket else None
    if sock is not None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def send_files(
    paths: list[Path], host: str, port: int, calling_aet: str = "RADTRIAGE_SCU", called_aet: str = "ANY-SCP"
) -> SendReport:
    """Send every DICOM file under ``paths`` on one association (per 128 contexts)."""
    report = SendReport()
    datasets = []
    for f in _files(paths):
        try:
            ds = dcmread(f)
            datasets.append((f, ds))
        except (InvalidDicomError, OSError, ValueError) as exc:
            report.failed.append((str(f), f"not DICOM: {type(exc).__name__}"))
    contexts: dict[tuple[str, str], None] = {}
    for _, ds in datasets:
        contexts.setdefault((str(ds.SOPClassUID), str(ds.file_meta.TransferSyntaxUID)))
    keys = list(contexts)
    # a requestor may offer at most 128 presentation contexts per association
    for start in range(0, max(len(keys), 1), 128):
        chunk = set(keys[start : start + 128])
        batch = [(f, ds) for f, ds in datasets if (str(ds.SOPClassUID), str(ds.file_meta.TransferSyntaxUID)) in chunk]
        if not batch:
            continue
        ae = AE(ae_title=calling_aet)
        ae.requested_contexts = [build_context(sop, [ts]) for sop, ts in chunk]
        assoc = ae.associate(host, port, ae_title=called_aet, evt_handlers=[(evt.EVT_CONN_OPEN, _nodelay)])
        if not assoc.is_established:
            for f, _ in batch:
                report.failed.append((str(f), "association rejected or aborted"))
            continue
        try:
            for f, ds in batch:
                status = assoc.send_c_store(ds)
                code = getattr(status, "Status", None)
                if code == 0x0000:
                    report.sent += 1
                else:
                    report.failed.append((str(f), f"status 0x{code:04X}" if code is not None else "no response"))
        finally:
            assoc.release()
    return report
