"""The listener's connection guard: what counts as one source, and that places come back."""

from __future__ import annotations

from radtriage.ingest.connections import ConnectionGuard, ConnectionLimits, Refusal, source_of
from radtriage.ingest.metrics import IngestMetrics


def test_an_ipv6_64_is_one_source_and_a_mapped_ipv4_is_its_ipv4() -> None:
    assert source_of("2001:db8:1:2::10") == source_of("2001:db8:1:2:ffff::1") == "2001:db8:1:2::/64"
    assert source_of("2001:db8:1:3::10") != source_of("2001:db8:1:2::10")
    assert source_of("::ffff:192.0.2.7") == "192.0.2.7" == source_of("192.0.2.7")
    assert source_of("fe80::1%eth0") == "fe80::/64"


def test_a_host_rotating_ipv6_addresses_meets_the_per_address_limit() -> None:
    metrics = IngestMetrics()
    guard = ConnectionGuard(ConnectionLimits(per_address=2, pending=10, timeout_s=1.0), metrics)
    admitted = [guard.admit(f"2001:db8::{i:x}") for i in range(1, 5)]
    assert admitted == [True, True, False, False]
    assert guard.admit("192.0.2.7")  # another source still gets in
    refused = metrics.registry.get_sample_value(
        "radtriage_dicom_connections_refused_total", {"reason": Refusal.PER_ADDRESS_LIMIT})
    assert refused == 2
    guard.closed("2001:db8::1", pending=True)  # a place given back is free again
    assert guard.admit("2001:db8::99")
    assert metrics.registry.get_sample_value("radtriage_dicom_connections_open", {"state": "pending"}) == 3
