"""C-STORE of a result's DICOM objects to one destination (pynetdicom SCU), with the next best object where
the destination refuses a SOP class.

One association per send offers each object's SOP class (Explicit and Implicit VR Little Endian). What
the destination does not accept is left out and named: a refused SEG is answered by the key images (SC)
and their Key Object Selection, which every PACS stores. A status of success or warning stores the object;
a failure status, a rejected or aborted association or a dropped connection raises `SendError` (retried;
an association rejected permanently, or every object refused, is permanent). Objects carry the UIDs of
their result and revision, so a resend stores the same objects again, never copies under new UIDs.
"""

from __future__ import annotations

import logging
import socket
from dataclasses import dataclass, field

from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import AE, evt
from pynetdicom.presentation import build_context

from radtriage.config.exports import DicomDestination
from radtriage.outbox import SendError

log = logging.getLogger("radtriage.exports")

SEG_STORAGE = "1.2.840.10008.5.1.4.1.1.66.4"
_OK = {0x0000} | set(range(0xB000, 0xB008))  # success and the C-STORE warnings (coercion, elements discarded)


@dataclass
class Delivery:
    """What one send stored and what it left out (``notes``: said in the log and on the study page)."""

    stored: list[str] = field(default_factory=list)  # SOP Instance UIDs
    refused_classes: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _nodelay(event: evt.Event) -> None:
    sock = event.assoc.dul.socket.socket if event.assoc.dul.socket else None
    if sock is not None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def associate(dest: DicomDestination, calling_ae: str, classes: list[str], contexts: list | None = None,
              ext_neg: list | None = None, handlers: list | None = None):
    """An established association with ``dest`` (its TLS where set) offering ``classes`` in Explicit and
    Implicit VR Little Endian, or the presentation ``contexts`` given; raises `SendError` otherwise."""
    ae = AE(ae_title=calling_ae)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = dest.timeout_s
    ae.requested_contexts = contexts or [build_context(c, [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
                                         for c in classes]
    tls = (dest.tls.context(), dest.host) if dest.tls is not None else None
    try:
        assoc = ae.associate(dest.host, dest.port, ae_title=dest.ae_title, tls_args=tls, ext_neg=ext_neg,
                             evt_handlers=[(evt.EVT_CONN_OPEN, _nodelay), *(handlers or [])])
    except OSError as exc:
        raise SendError(f"{dest.name}: cannot connect: {type(exc).__name__}") from None
    if assoc.is_rejected:
        permanent = getattr(assoc.acceptor, "primitive", None) is not None and \
            getattr(assoc.acceptor.primitive, "result", None) == 0x01  # rejected-permanent
        raise SendError(f"{dest.name}: association rejected", permanent=permanent)
    if not assoc.is_established:
        if assoc.rejected_contexts and not assoc.accepted_contexts:  # pynetdicom aborts such an association
            raise SendError(f"{dest.name}: accepts none of the objects' SOP classes", permanent=True)
        raise SendError(f"{dest.name}: association not established (aborted or no answer)")
    return assoc


def c_store(assoc, dest_name: str, obj, what: str) -> None:
    """One C-STORE of ``obj`` (a data set, or the path of a Part 10 file sent as stored) on ``assoc``;
    raises `SendError` unless it was stored (success or warning)."""
    status = assoc.send_c_store(obj)
    code = getattr(status, "Status", None)
    if code is None:
        raise SendError(f"{dest_name}: no C-STORE response (connection lost or timed out)")
    if code not in _OK:
        raise SendError(f"{dest_name}: C-STORE status 0x{code:04X} for a {what}")


def store(dest: DicomDestination, calling_ae: str, objects: list[Dataset],
          fallback: list[Dataset] | None = None) -> Delivery:
    """C-STORE ``objects`` (in order) on one association. ``fallback`` is sent instead of any SEG the
    destination does not accept (the key images and their KOS, when they were not among ``objects``)."""
    fallback = fallback or []
    classes = list(dict.fromkeys(str(ds.SOPClassUID) for ds in [*objects, *fallback]))
    assoc = associate(dest, calling_ae, classes)
    out = Delivery()
    try:
        accepted = {str(cx.abstract_syntax) for cx in assoc.accepted_contexts}
        out.refused_classes = [c for c in classes if c not in accepted]
        todo = [ds for ds in objects if str(ds.SOPClassUID) in accepted]
        if SEG_STORAGE in out.refused_classes and any(str(ds.SOPClassUID) == SEG_STORAGE for ds in objects):
            extra = [ds for ds in fallback if str(ds.SOPClassUID) in accepted]
            todo += extra
            out.notes.append(f"{dest.name} does not accept SEG: sent key images and a Key Object Selection "
                             f"instead ({len(extra)} objects)")
        for c in out.refused_classes:
            if c != SEG_STORAGE:
                out.notes.append(f"{dest.name} does not accept SOP class {c}: not sent")
        if not todo:
            raise SendError(f"{dest.name}: accepts none of the objects' SOP classes", permanent=True)
        for ds in todo:
            c_store(assoc, dest.name, ds, ds.SOPClassUID.name)
            out.stored.append(str(ds.SOPInstanceUID))
    finally:
        if assoc.is_established:
            assoc.release()
    for note in out.notes:
        log.warning("export: %s", note)
    return out
