"""What the listener does with a TCP connection before it is an association.

pynetdicom starts an association (two threads, one polling every millisecond)
for every accepted connection and counts it against ``max_associations`` while
it waits up to the ACSE timeout for an A-ASSOCIATE-RQ. Anyone who can reach the
port could so fill every slot with silent sockets. Here a connection is first
a *pending* connection, held by one sleeping thread and no association slot:

- each source address (an IPv6 /64 counts as one) may hold
  ``max_connections_per_address`` connections (pending or associated) and at
  most ``max_pending_connections`` wait at once; others are closed on accept;
- a pending connection must deliver a whole A-ASSOCIATE-RQ PDU (peeked, not
  read, so pynetdicom reads it as usual) within ``pre_association_timeout_s``,
  TLS handshake included, or it is closed (over TLS, where records cannot be
  peeked, its first bytes; pynetdicom's ACSE timeout, as short, covers the rest);
- only then is it handed to pynetdicom.

Refusals are counted by reason (``radtriage_dicom_connections_refused_total``)
and open connections by state (``radtriage_dicom_connections_open``).
"""

from __future__ import annotations

import collections
import ipaddress
import logging
import select
import socket
import socketserver
import struct
import threading
import time
from dataclasses import dataclass
from typing import Any

from pynetdicom.transport import RequestHandler, ThreadedAssociationServer

from radtriage.ingest.metrics import IngestMetrics

log = logging.getLogger("radtriage.scp")

A_ASSOCIATE_RQ = 0x01
PDU_HEADER_BYTES = 6
# A whole A-ASSOCIATE-RQ is waited for up to this size (128 presentation contexts
# with a few transfer syntaxes each need ~20 KB); the rest of a larger one is
# left to pynetdicom's ACSE timeout, which is set to the same short time.
RQ_PEEK_LIMIT = 64 * 1024
PEEK_POLL_S = 0.05  # how often a partly arrived PDU is looked at again
LOG_EVERY_S = 60.0  # one warning per address and reason in this time


class Refusal:
    """Why a connection was closed before it became an association (metric labels)."""

    PER_ADDRESS_LIMIT = "per_address_limit"
    PENDING_LIMIT = "pending_limit"
    IDLE_TIMEOUT = "idle_timeout"  # nothing at all arrived in time
    INCOMPLETE_PDU = "incomplete_pdu"  # an A-ASSOCIATE-RQ began and stalled
    NOT_ASSOCIATE_RQ = "not_associate_rq"  # the first PDU is something else
    TLS_HANDSHAKE = "tls_handshake"


@dataclass(frozen=True)
class ConnectionLimits:
    per_address: int
    pending: int
    timeout_s: float


def source_of(address: str) -> str:
    """What the per-address limit counts: an IPv4 address (also when IPv4-mapped), or an
    IPv6 /64, which one host can fill with addresses of its own."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


class LocalTally:
    """Open connections per source address and pending ones, in this process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._open: collections.Counter[str] = collections.Counter()
        self._pending = 0

    def take(self, address: str, limits: ConnectionLimits) -> str | None:
        """Count a new pending connection from ``address``; the `Refusal` when a limit is reached."""
        with self._lock:
            if self._open[address] >= limits.per_address:
                return Refusal.PER_ADDRESS_LIMIT
            if self._pending >= limits.pending:
                return Refusal.PENDING_LIMIT
            self._open[address] += 1
            self._pending += 1
            return None

    def associating(self) -> None:
        with self._lock:
            self._pending -= 1

    def release(self, address: str, pending: bool) -> None:
        with self._lock:
            self._open[address] -= 1
            if self._open[address] <= 0:
                del self._open[address]
            if pending:
                self._pending -= 1


class ConnectionGuard:
    """Counts open connections per source address; admits, refuses and logs.

    The counts live in a tally: this process's own (`LocalTally`), or one shared by every
    listener process on the port (`radtriage.ingest.listeners.SharedTally`), so the limits
    hold across processes."""

    def __init__(self, limits: ConnectionLimits, metrics: IngestMetrics, tally: Any = None) -> None:
        self.limits = limits
        self.metrics = metrics
        self.tally = tally if tally is not None else LocalTally()
        self._lock = threading.Lock()
        self._logged: dict[tuple[str, str], tuple[float, int]] = {}

    def admit(self, address: str) -> bool:
        """Take a pending place for a new connection from ``address``, or refuse it."""
        address = source_of(address)
        reason = self.tally.take(address, self.limits)
        if reason is None:
            self.metrics.connections_open.labels("pending").inc()
            return True
        self.refuse(address, reason)
        return False

    def associating(self) -> None:
        """A pending connection has sent its A-ASSOCIATE-RQ and goes to pynetdicom."""
        self.tally.associating()
        self.metrics.connections_open.labels("pending").dec()
        self.metrics.connections_open.labels("associated").inc()

    def closed(self, address: str, pending: bool) -> None:
        self.tally.release(source_of(address), pending)
        self.metrics.connections_open.labels("pending" if pending else "associated").dec()

    def refuse(self, address: str, reason: str) -> None:
        """Count a refusal; warn at most once a minute per address and reason."""
        address = source_of(address)
        self.metrics.connections_refused.labels(reason).inc()
        now = time.monotonic()
        with self._lock:
            if len(self._logged) > 1024:
                self._logged.clear()
            last, quiet = self._logged.get((address, reason), (float("-inf"), 0))
            if now - last < LOG_EVERY_S:
                self._logged[(address, reason)] = (last, quiet + 1)
                return
            self._logged[(address, reason)] = (now, 0)
        log.warning("connection refused before association: address=%s reason=%s (%d more not logged)",
                    address, reason, quiet)


def _peek(sock: socket.socket, n: int, deadline: float) -> tuple[bytes, bool]:
    """Up to ``n`` bytes waiting on ``sock``, left unread: as soon as ``n`` are there,
    else what there is at ``deadline``. The flag says the peer closed with nothing sent."""
    got = b""
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return got, False
        sock.settimeout(left)
        try:
            data = sock.recv(n, socket.MSG_PEEK)
        except TimeoutError:
            return got, False
        except OSError:
            return got, not got
        if not data:
            return b"", True
        if len(data) >= n:
            return data, False
        if len(data) == len(got):  # nothing new since the last look: wait a little
            time.sleep(min(PEEK_POLL_S, left))
        got = data


def await_associate_rq(sock: socket.socket, deadline: float) -> str | None:
    """None once a whole A-ASSOCIATE-RQ (up to `RQ_PEEK_LIMIT`) waits on ``sock``; otherwise
    the `Refusal`, or "" when the peer closed without sending anything."""
    head, closed = _peek(sock, PDU_HEADER_BYTES, deadline)
    if closed:
        return ""
    if not head:
        return Refusal.IDLE_TIMEOUT
    if head[0] != A_ASSOCIATE_RQ:
        return Refusal.NOT_ASSOCIATE_RQ
    if len(head) < PDU_HEADER_BYTES:
        return Refusal.INCOMPLETE_PDU
    (length,) = struct.unpack_from(">I", head, 2)
    need = min(PDU_HEADER_BYTES + length, RQ_PEEK_LIMIT)
    whole, _ = _peek(sock, need, deadline)
    return None if len(whole) >= need else Refusal.INCOMPLETE_PDU


class _Handler(RequestHandler):
    """pynetdicom's handler, keeping the association it starts."""

    assoc: Any = None

    def _create_association(self):  # type: ignore[no-untyped-def]
        self.assoc = super()._create_association()
        return self.assoc


class GuardedAssociationServer(ThreadedAssociationServer):
    """pynetdicom's threaded server with a `ConnectionGuard` in front.

    Accepting only accepts (pynetdicom's own server does the TLS handshake in its
    accept loop, where one silent TLS client stops every other). Each admitted
    connection gets a thread that waits for its A-ASSOCIATE-RQ, then runs the
    association and stays until it ends, so the count of open connections is
    released exactly once, whatever way the association ends.
    """

    request_queue_size = 128  # connections the kernel queues before accept
    daemon_threads = True
    block_on_close = False

    def __init__(self, *args: Any, guard: ConnectionGuard, network_timeout_s: float, **kwargs: Any) -> None:
        self.guard = guard
        self.network_timeout_s = network_timeout_s
        super().__init__(*args, request_handler=_Handler, **kwargs)

    def get_request(self) -> tuple[socket.socket, Any]:
        assert self.socket is not None
        return self.socket.accept()

    def verify_request(self, request: Any, client_address: Any) -> bool:
        return self.guard.admit(client_address[0])

    def process_request(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request(request, client_address)
        except BaseException:  # no thread: the place taken by `verify_request` goes back
            self.guard.closed(client_address[0], pending=True)
            raise

    def finish_request(self, request: Any, client_address: Any) -> Any:
        return _Handler(request, client_address, self).assoc

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        address = client_address[0]
        pending = True
        try:
            request, refusal = self._await_association(request)
            if refusal is None:
                self.guard.associating()
                pending = False
                request.settimeout(self.network_timeout_s)  # a peer stalled mid-PDU ends the association
                assoc = self.finish_request(request, client_address)
                assoc.join()
            elif refusal:
                self.guard.refuse(address, refusal)
        except Exception:  # noqa: BLE001 - one connection's failure is logged, never the server's
            log.exception("connection from %s failed", address)
        finally:
            self.shutdown_request(request)
            self.guard.closed(address, pending)

    def _await_association(self, sock: socket.socket) -> tuple[socket.socket, str | None]:
        deadline = time.monotonic() + self.guard.limits.timeout_s
        if self.ssl_context is not None:
            sock.settimeout(self.guard.limits.timeout_s)
            try:
                sock = self.ssl_context.wrap_socket(sock, server_side=True)
            except OSError:  # ssl.SSLError and timeouts included
                return sock, Refusal.TLS_HANDSHAKE
            # TLS records cannot be peeked: the first of them must arrive in time; the rest of
            # the A-ASSOCIATE-RQ is left to pynetdicom's ACSE timeout (the same short time)
            left = max(0.0, deadline - time.monotonic())
            if not sock.pending() and not select.select([sock], [], [], left)[0]:
                return sock, Refusal.IDLE_TIMEOUT
            return sock, None
        return sock, await_associate_rq(sock, deadline)

    def shutdown(self) -> None:
        """Stop accepting and close the listening socket (the AE never listed this server)."""
        socketserver.BaseServer.shutdown(self)  # pynetdicom's would also unlist it from the AE
        self.server_close()


class SharedPortServer(GuardedAssociationServer):
    """The same, bound with SO_REUSEPORT: several listener processes accept on one port and the
    kernel spreads new connections among them."""

    def server_bind(self) -> None:
        assert self.socket is not None
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)  # pynetdicom's bind sets SO_REUSEADDR only
        super().server_bind()
