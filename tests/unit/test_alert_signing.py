"""Signed acknowledgement links and webhook signatures."""

from __future__ import annotations

import time

import pytest

from radtriage.alerts.signing import (
    LinkError,
    ack_token,
    read_ack_token,
    verify_webhook,
    webhook_headers,
)

KEY = b"k" * 32


def test_an_ack_token_round_trips_until_it_expires():
    exp = int(time.time()) + 60
    token = ack_token(KEY, 42, "chan", exp)
    grant = read_ack_token(KEY, token)
    assert (grant.alert_id, grant.member, grant.expires) == (42, "chan", exp)
    with pytest.raises(LinkError, match="expired"):
        read_ack_token(KEY, token, now=exp + 1)


@pytest.mark.parametrize("tamper", [
    lambda t: t.replace("42.", "43.", 1),          # another alert
    lambda t: t.replace(".chan.", ".lee.", 1),     # another member
    lambda t: t[:-1] + ("0" if t[-1] != "0" else "1"),
    lambda t: "nonsense",
    lambda t: t + "/../x",
])
def test_a_forged_or_malformed_token_is_refused(tamper):
    token = ack_token(KEY, 42, "chan", int(time.time()) + 60)
    with pytest.raises(LinkError, match="invalid"):
        read_ack_token(KEY, tamper(token))


def test_another_key_does_not_verify():
    token = ack_token(KEY, 1, "chan", int(time.time()) + 60)
    with pytest.raises(LinkError):
        read_ack_token(b"x" * 32, token)


def test_webhook_signature_over_timestamp_and_body():
    body = b'{"event":"alert.page"}'
    h = webhook_headers(KEY, body, "rt-alert-1", "alert.page", now=1_800_000_000)
    assert h["Idempotency-Key"] == "rt-alert-1" and h["X-Radtriage-Signature"].startswith("sha256=")
    ts, sig = h["X-Radtriage-Timestamp"], h["X-Radtriage-Signature"]
    assert verify_webhook(KEY, body, ts, sig, 300, now=1_800_000_100) is None
    assert verify_webhook(KEY, body + b" ", ts, sig, 300, now=1_800_000_100) == "bad signature"
    assert verify_webhook(KEY, body, str(int(ts) + 1), sig, 300, now=1_800_000_100) == "bad signature"
    assert verify_webhook(KEY, body, ts, sig, 300, now=1_800_000_301) == "stale"  # a replay
    assert verify_webhook(KEY, body, None, sig) == "missing"
