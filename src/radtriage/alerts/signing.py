"""Signed one-click acknowledgement links and webhook signatures (HMAC-SHA256).

An acknowledgement token names the alert, the member it was sent to, the
escalation round (level) it was sent at and its expiry (Unix seconds), signed
with the service's secret key: ``<alert>.<member>.<level>.<expires>.<hex>``.
Opening the link shows a confirmation page; only its POST acknowledges (mail
systems pre-fetch links with GET), and only while the alert is still at that
level: a forwarded message stops acknowledging once the alert has escalated.

A webhook body is signed over ``<timestamp>.<body>``; the receiver checks the
signature and refuses a timestamp older than its replay window, and uses the
``Idempotency-Key`` header to take a delivery made twice once.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass

from radtriage.security import same, sign

TIMESTAMP_HEADER = "X-Radtriage-Timestamp"
SIGNATURE_HEADER = "X-Radtriage-Signature"
EVENT_HEADER = "X-Radtriage-Event"
IDEMPOTENCY_HEADER = "Idempotency-Key"
_TOKEN = re.compile(r"^(\d{1,18})\.([a-z0-9][a-z0-9_-]{0,31})\.(\d{1,3})\.(\d{1,12})\.([0-9a-f]{64})$")


class LinkError(ValueError):
    """An acknowledgement link that is malformed, forged or expired; ``reason`` says which."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class AckGrant:
    alert_id: int
    member: str
    expires: int
    level: int = 0  # the round (0-based) the link was sent at


def _ack_message(alert_id: int, member: str, level: int, expires: int) -> bytes:
    return f"radtriage-ack-2:{alert_id}.{member}.{level}.{expires}".encode()


def ack_token(key: bytes, alert_id: int, member: str, expires: int, level: int = 0) -> str:
    return f"{alert_id}.{member}.{level}.{expires}.{sign(key, _ack_message(alert_id, member, level, expires))}"


def read_ack_token(key: bytes, token: str, now: float | None = None) -> AckGrant:
    """The grant a token carries, or `LinkError` ("invalid" or "expired")."""
    m = _TOKEN.match(token)
    if m is None:
        raise LinkError("invalid")
    alert_id, member, level, expires = int(m[1]), m[2], int(m[3]), int(m[4])
    if not same(sign(key, _ack_message(alert_id, member, level, expires)), m[5]):
        raise LinkError("invalid")
    if (time.time() if now is None else now) > expires:
        raise LinkError("expired")
    return AckGrant(alert_id, member, expires, level)


def webhook_signature(secret: bytes, timestamp: int, body: bytes) -> str:
    return "sha256=" + sign(secret, str(timestamp).encode() + b"." + body)


def webhook_headers(secret: bytes, body: bytes, key: str, event: str, now: float | None = None) -> dict[str, str]:
    ts = int(time.time() if now is None else now)
    return {"Content-Type": "application/json", TIMESTAMP_HEADER: str(ts),
            SIGNATURE_HEADER: webhook_signature(secret, ts, body), IDEMPOTENCY_HEADER: key, EVENT_HEADER: event}


def verify_webhook(secret: bytes, body: bytes, timestamp: str | None, signature: str | None,
                   max_age_s: float = 300.0, now: float | None = None) -> str | None:
    """None when the signature is valid and fresh; otherwise why not ("missing", "bad signature", "stale")."""
    if not timestamp or not signature or not timestamp.isdigit():
        return "missing"
    if not same(webhook_signature(secret, int(timestamp), body), signature):
        return "bad signature"
    if abs((time.time() if now is None else now) - int(timestamp)) > max_age_s:
        return "stale"
    return None
