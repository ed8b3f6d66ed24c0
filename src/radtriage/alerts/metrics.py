"""Prometheus metrics of the alerts, registered in the registry the service's ``/metrics`` exposes.

Pass the ingest metrics' registry (``AlertMetrics(services.metrics.registry)``)
so one scrape has both; without one, a registry of its own is made.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

DELIVERY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600)
ACK_BUCKETS = (10, 30, 60, 120, 180, 300, 600, 900, 1800, 3600)


class AlertMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.alerts = Counter(
            "radtriage_alerts", "Alert events by finding and outcome (created, duplicate, acknowledged, "
            "escalated, unanswered, resolved)", ["finding", "outcome"], registry=r)
        self.deliveries = Counter(
            "radtriage_alert_deliveries", "Alert deliveries by channel and outcome (delivered, retry, failed)",
            ["channel", "outcome"], registry=r)
        self.delivery_seconds = Histogram(
            "radtriage_alert_delivery_seconds", "From deciding an alert to a channel accepting it",
            ["channel"], buckets=DELIVERY_BUCKETS, registry=r)
        self.scan_to_delivery_seconds = Histogram(
            "radtriage_alert_scan_to_delivery_seconds", "From the last instance received to the first delivery",
            ["finding"], buckets=DELIVERY_BUCKETS, registry=r)
        self.ack_seconds = Histogram(
            "radtriage_alert_ack_seconds", "From deciding an alert to its acknowledgement",
            ["finding"], buckets=ACK_BUCKETS, registry=r)
