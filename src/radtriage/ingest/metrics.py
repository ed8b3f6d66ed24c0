"""Prometheus metrics for ingestion, held in a registry the service owns."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class IngestMetrics:
    """Counters and histograms of the ingest path. One per service process."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.instances = Counter("radtriage_instances_received", "Instances stored", ["source", "outcome"], registry=r)
        self.bytes = Counter("radtriage_bytes_received", "Bytes of instances stored", ["source"], registry=r)
        self.rejections = Counter("radtriage_rejections", "Instances refused", ["source", "reason"], registry=r)
        self.associations = Counter("radtriage_associations", "DICOM associations by outcome", ["outcome"], registry=r)
        self.connections_open = Gauge("radtriage_dicom_connections_open",
                                      "DICOM connections open: pending (no A-ASSOCIATE-RQ yet) or associated",
                                      ["state"], registry=r, multiprocess_mode="livesum")
        for state in ("pending", "associated"):
            self.connections_open.labels(state)
        self.connections_refused = Counter("radtriage_dicom_connections_refused",
                                           "DICOM connections closed before association, by reason", ["reason"],
                                           registry=r)
        self.series_completed = Counter("radtriage_series_completed", "Series closed by assembly", ["reason"],
                                        registry=r)
        self.store_latency = Histogram("radtriage_store_seconds",
                                       "Time to store one instance durably (parse, write, fsync, index)", ["source"],
                                       buckets=(0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
                                       registry=r)
