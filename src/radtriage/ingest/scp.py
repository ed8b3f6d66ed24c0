"""The DICOM listener: a pynetdicom C-STORE / C-ECHO SCP.

Handlers are thin: C-STORE hands the encoded bytes, as received, to
`InstanceStore.store_instance` and turns its outcome into a DIMSE status.
A handler never raises. Association requests are checked against the
allow-list of calling AE titles (and addresses); with no list configured
only this machine may associate.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import ssl
import threading
import uuid
from dataclasses import dataclass

from pydicom import uid
from pynetdicom import AE, AllStoragePresentationContexts, evt
from pynetdicom import _config as pynetdicom_config
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

from radtriage.config import Peer, Settings
from radtriage.db import associations
from radtriage.ingest.connections import (
    ConnectionGuard,
    ConnectionLimits,
    GuardedAssociationServer,
    SharedPortServer,
)
from radtriage.ingest.meta import part10_header
from radtriage.ingest.parse import InstanceRejected, RejectReason
from radtriage.ingest.received import ReceivedFiles, discard_partial, receive_to_disk
from radtriage.ingest.store import InstanceStore, Origin

log = logging.getLogger("radtriage.scp")

# What scanners and PACS send. pynetdicom copies every supported context for
# each association; all 45 syntaxes it knows x 170 storage classes cost ~75 ms
# of CPU per association here, these 16 about a third of that.
ACCEPTED_TRANSFER_SYNTAXES = [
    uid.ImplicitVRLittleEndian,
    uid.ExplicitVRLittleEndian,
    uid.ExplicitVRBigEndian,
    uid.DeflatedExplicitVRLittleEndian,
    uid.JPEGBaseline8Bit,
    uid.JPEGExtended12Bit,
    uid.JPEGLossless,
    uid.JPEGLosslessSV1,
    uid.JPEGLSLossless,
    uid.JPEGLSNearLossless,
    uid.JPEG2000Lossless,
    uid.JPEG2000,
    uid.RLELossless,
    uid.HTJ2KLossless,
    uid.HTJ2KLosslessRPCL,
    uid.HTJ2K,
]

# A-ASSOCIATE-RJ: rejected-permanent, service-user, calling-AE-title-not-recognized
REJECT_CALLING_AE = (0x01, 0x01, 0x03)


def _uid_checked_later(value: object) -> tuple[bool, str]:
    """pynetdicom's check of the UIDs in a DIMSE command, in place of its own.

    pynetdicom refuses a command whose UID is over 64 characters by aborting the
    association, so the peer gets no answer; the C-STORE handler checks every UID
    itself and answers 0xC002 on the same association instead (`valid_uid`)."""
    return (True, "") if isinstance(value, str) else (False, "not a str")


@dataclass(frozen=True)
class PeerPolicy:
    """Who may associate: listed peers, or (with none listed) this machine only."""

    peers: tuple[Peer, ...]

    @property
    def local_only(self) -> bool:
        return not self.peers

    def allows(self, calling_ae: str, address: str) -> bool:
        if self.local_only:
            return _is_loopback(address)
        ae = calling_ae.strip()
        return any(p.ae_title == ae and (p.host is None or p.host == address) for p in self.peers)


def _is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def tls_context(settings: Settings) -> ssl.SSLContext | None:
    tls = settings.tls
    if not tls.enabled:
        return None
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(str(tls.cert_file), str(tls.key_file))
    if tls.ca_file:
        ctx.load_verify_locations(str(tls.ca_file))
    ctx.verify_mode = ssl.CERT_REQUIRED if tls.require_client_cert else ssl.CERT_NONE
    return ctx


class StorageSCP:
    """The listener. `start()` serves in background threads; `stop()` ends it.

    One of several listener processes on one port (`radtriage.ingest.listeners`) binds with
    SO_REUSEPORT (``shared_port``), counts connections in the tally they share, and names its
    ``listener`` number in its log lines."""

    def __init__(self, settings: Settings, store: InstanceStore, *, tally: object = None,
                 shared_port: bool = False, listener: int = 0) -> None:
        self.settings = settings
        self.store = store
        self.shared_port = shared_port
        self.listener = listener
        self.policy = PeerPolicy(tuple(settings.allowed_peers))
        self.ae = self._make_ae()
        self.guard = ConnectionGuard(
            ConnectionLimits(settings.max_connections_per_address, settings.max_pending_connections,
                             settings.pre_association_timeout_s),
            store.metrics,
            tally,
        )
        self.received = ReceivedFiles(store.spool, store.max_bytes)
        self._server: GuardedAssociationServer | None = None

    def _make_ae(self) -> AE:
        s = self.settings
        ae = AE(ae_title=s.ae_title)
        ae.maximum_pdu_size = s.max_pdu_bytes
        ae.maximum_associations = s.max_associations
        ae.network_timeout = s.network_timeout_s
        # as an acceptor pynetdicom waits this long for the A-ASSOCIATE-RQ (after the TLS
        # handshake; over plain TCP the connection guard has already seen it arrive)
        ae.acse_timeout = s.pre_association_timeout_s
        ae.dimse_timeout = 60
        for cx in AllStoragePresentationContexts:
            ae.add_supported_context(cx.abstract_syntax, ACCEPTED_TRANSFER_SYNTAXES)
        ae.add_supported_context(Verification, ACCEPTED_TRANSFER_SYNTAXES[:3])
        return ae

    @property
    def port(self) -> int:
        assert self._server is not None
        return self._server.server_address[1]

    def start(self) -> None:
        pynetdicom_config.VALIDATORS["UI"] = _uid_checked_later  # process-wide: this process is the listener
        receive_to_disk()
        handlers = [
            (evt.EVT_CONN_OPEN, self._on_conn_open),
            (evt.EVT_REQUESTED, self._on_requested),
            (evt.EVT_ACCEPTED, self._on_accepted),
            (evt.EVT_RELEASED, self._on_released),
            (evt.EVT_CONN_CLOSE, self._on_conn_close),
            (evt.EVT_C_STORE, self._on_c_store),
            (evt.EVT_C_ECHO, self._on_c_echo),
        ]
        server = self.ae.make_server(
            (self.settings.dicom_host, self.settings.dicom_port),
            evt_handlers=handlers,
            ssl_context=tls_context(self.settings),
            server_class=SharedPortServer if self.shared_port else GuardedAssociationServer,
            guard=self.guard,
            network_timeout_s=self.settings.network_timeout_s,
        )
        server.received_files = self.received  # type: ignore[attr-defined] # see radtriage.ingest.received
        threading.Thread(target=server.serve_forever, name="dicom-listener", daemon=True).start()
        self._server = server
        if self.policy.local_only:
            log.warning(
                "no allowed_peers configured: accepting DICOM associations from this machine only"
            )

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    # --- association events ---------------------------------------------------

    def _on_conn_open(self, event: evt.Event) -> None:
        sock = event.assoc.dul.socket.socket if event.assoc.dul.socket else None
        if sock is not None:
            try:
                # reply to each C-STORE at once (no Nagle delay)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass

    def _on_requested(self, event: evt.Event) -> None:
        assoc = event.assoc
        calling = assoc.requestor.primitive.calling_ae_title
        address = assoc.requestor.address
        if not self.policy.allows(calling, address):
            self.store.metrics.associations.labels("rejected").inc()
            log.warning(
                "association rejected: calling_ae=%s address=%s reason=%s",
                calling,
                address,
                "not on allow-list" if not self.policy.local_only else "not local",
            )
            assoc.acse.send_reject(*REJECT_CALLING_AE)
            evt.trigger(assoc, evt.EVT_REJECTED, {})
            assoc.kill()  # waits until the reject has gone out, as pynetdicom's own rejection does

    def _on_accepted(self, event: evt.Event) -> None:
        assoc = event.assoc
        assoc_id = str(uuid.uuid4())
        calling = assoc.requestor.ae_title.strip()
        try:
            associations.open_association(self.store.db, assoc_id, calling, assoc.requestor.address)
        except Exception:  # noqa: BLE001 - the store will fail and say so
            log.exception("could not record association")
        assoc.radtriage_id = assoc_id  # type: ignore[attr-defined]
        self.store.metrics.associations.labels("accepted").inc()
        log.info("association accepted: id=%s calling_ae=%s listener=%d", assoc_id, calling, self.listener)

    def _on_released(self, event: evt.Event) -> None:
        event.assoc.radtriage_how = "released"  # type: ignore[attr-defined]

    def _on_conn_close(self, event: evt.Event) -> None:
        discard_partial(event.assoc)  # a data set cut short by the end of the connection
        assoc_id = getattr(event.assoc, "radtriage_id", None)
        if assoc_id is None:
            return
        # pynetdicom may report the closed connection before the abort event
        how = "released" if getattr(event.assoc, "radtriage_how", "") == "released" else "aborted"
        try:
            associations.close_association(self.store.db, assoc_id, how)
        except Exception:  # noqa: BLE001
            log.exception("could not record association close")
        log.info("association closed: id=%s how=%s", assoc_id, how)

    # --- DIMSE services -------------------------------------------------------

    def _on_c_echo(self, event: evt.Event) -> int:
        return 0x0000

    def _on_c_store(self, event: evt.Event) -> int:
        assoc = event.assoc
        origin = Origin(
            source="dimse",
            calling_ae=assoc.requestor.ae_title.strip(),
            association_id=getattr(assoc, "radtriage_id", None),
        )
        req = event.request
        sop_class, sop_instance = str(req.AffectedSOPClassUID), str(req.AffectedSOPInstanceUID)
        try:
            try:
                header = part10_header(
                    sop_class, sop_instance, str(event.context.transfer_syntax), origin.calling_ae or ""
                )
                staged = self.received.stage(header, event.dataset_path, self.store.max_bytes)
            except InstanceRejected as rej:
                self.store.note_rejection(origin, rej, None)
                raise
            self.store.store_instance(
                [], origin, expected_sop_class=sop_class, expected_sop_instance=sop_instance, streamed=staged
            )
        except InstanceRejected as rej:
            return rej.reason.dimse_status
        except Exception:  # noqa: BLE001 - a handler never raises
            log.exception("unexpected error storing an instance")
            self.store.metrics.rejections.labels("dimse", RejectReason.INTERNAL.value).inc()
            return RejectReason.INTERNAL.dimse_status
        return 0x0000
