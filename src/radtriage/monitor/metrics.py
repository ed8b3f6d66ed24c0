"""Prometheus gauges of the model monitor, one series per pipeline, in the registry ``/metrics`` exposes
(pass ``services.metrics.registry``)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Gauge

from radtriage.monitor.signals import Verdict

LEVELS = {"ok": 0, "warning": 1, "demoted": 2}


class MonitorMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry

        def gauge(name: str, doc: str, *labels: str) -> Gauge:
            return Gauge(f"radtriage_monitor_{name}", doc, ["pipeline", *labels], registry=r)

        self.gauges = {
            "positive_rate": gauge("positive_rate", "Share of the window's live results flagged positive"),
            "score_psi": gauge("score_psi", "PSI of the window's scores against the commissioning baseline"),
            "score_ks": gauge("score_ks", "KS distance of the window's scores from the commissioning baseline"),
            "agreement": gauge("agreement", "Readers' agree / (agree + disagree) on the window's results"),
            "failure_rate": gauge("failure_rate", "Share of the pipeline's attempts since the window began that "
                                  "failed for good"),
            "no_ai_rate": gauge("no_ai_rate", "Share of the pipeline's attempts since the window began refused "
                                "by the input guard (AI not applicable)"),
        }
        self.input_psi = gauge("input_psi", "PSI of an input's values (manufacturer, scanner model, kernel, slice "
                               "thickness, kVp, pixel spacing) in the window against the results before it", "input")
        self.results = gauge("window_results", "Live results in the monitor's window")
        self.level = gauge("level", "The monitor's verdict: 0 ok, 1 warning, 2 demoted by the monitor")

    def update(self, pipeline_id: str, verdict: Verdict, n: int) -> None:
        self.results.labels(pipeline_id).set(n)
        for s in verdict.signals:
            if s.value is None:
                continue
            if s.name.startswith("input:"):
                self.input_psi.labels(pipeline_id, s.name.split(":", 1)[1]).set(s.value)
            elif s.name in self.gauges:
                self.gauges[s.name].labels(pipeline_id).set(s.value)

    def set_level(self, pipeline_id: str, level: str) -> None:
        self.level.labels(pipeline_id).set(LEVELS[level])
