"""Stroke-team alerts: roster and rota, policies per finding, channels, acknowledgement and escalation.

`AlertService` is the entry point (see `radtriage.alerts.service`);
`load_alerting` reads ``configs/alerting.yaml``; `AlertMetrics` joins the
service's Prometheus registry. The alert state machine is `states`; its pages
leave through `radtriage.outbox` (`worker.AlertSender`).
"""

from radtriage.alerts.config import AlertingConfig, AlertingConfigError, load_alerting, parse_alerting
from radtriage.alerts.metrics import AlertMetrics
from radtriage.alerts.service import AlertService

__all__ = ["AlertMetrics", "AlertService", "AlertingConfig", "AlertingConfigError", "load_alerting", "parse_alerting"]
