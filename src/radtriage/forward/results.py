"""An edge's AI results to its radtriage hub: the outbox kind ``forward_result``.

With ``forward.ai: edge`` and a radtriage hub (``api_url``, or a STOW-RS URL on one), `queue_results` runs in
the transaction that records results (`radtriage.db.ledger.record_results`, the dispatcher's ``on_recorded``):
one row per result, live or shadow as the edge's governance had the pipeline when it ran, key
``forward-result:<result id>``, holding the whole body (`radtriage.forward.payload.body_of`). `ResultSender`
posts it to ``/api/v1/forward/results`` with the service token, retried with the forward rows' backoff: a hub
that is away gets it when it is back, and the hub keeps a result delivered twice once (per site and result id).
A refusal that cannot change (the hub's validation, HTTP 422) fails the row at once. Each result forwarded or
given up is audited at the edge (UIDs only).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping
from typing import Any

import httpx
from prometheus_client import CollectorRegistry, Counter
from sqlalchemy import Connection

from radtriage.config.forward import ForwardSettings
from radtriage.db import audit, outbox
from radtriage.forward import transport
from radtriage.forward.payload import body_of
from radtriage.outbox import Attempt, Retry

log = logging.getLogger("radtriage.forward")

KIND = "forward_result"
CHANNEL = "api"


def result_key(result_id: int) -> str:
    return f"{KIND.replace('_', '-')}:{result_id}"


def queue_results(conn: Connection, cfg: ForwardSettings, hub: str, recorded: list[Mapping[str, Any]],
                  now: dt.datetime) -> int:
    """Queue each newly recorded result for the hub, in the recording transaction; how many."""
    for row in recorded:
        outbox.add(conn, KIND, result_key(row["id"]), subject=row["series_uid"], target=hub, channel=CHANNEL,
                   payload=body_of(cfg.site, dict(row), now), now=now)
    return len(recorded)


class ResultSender:
    """Kind ``forward_result`` of `radtriage.outbox`: one row = one result to the hub's API."""

    def __init__(self, cfg: ForwardSettings, client: httpx.Client, retry: Retry, hub: str,
                 registry: CollectorRegistry | None = None) -> None:
        assert cfg.results_url is not None
        self.cfg, self.client, self.retry, self.hub = cfg, client, retry, hub
        self.url = cfg.results_url
        self.sent = Counter("radtriage_forward_results", "AI results forwarded to the hub, by outcome", ["outcome"],
                            registry=registry)

    def prepare(self, conn: Connection, attempt: Attempt, now: dt.datetime) -> bool:
        return True

    def send(self, attempt: Attempt, now: dt.datetime) -> None:
        answer = transport.post_json(self.client, self.url, self.cfg.token(), attempt.item["payload"], "AI result")
        attempt.notes["new_at_hub"] = bool(answer.get("new"))

    def record(self, conn: Connection, attempt: Attempt, now: dt.datetime) -> None:
        p = attempt.item["payload"]
        delivered = attempt.outcome == outbox.DELIVERED
        audit.record(conn, "result_forwarded" if delivered else "result_forward_failed", actor="radtriage",
                     role="system", study_uid=p["study_uid"],
                     detail={"result_id": p["result_id"], "series_uid": p["series_uid"], "pipeline": p["pipeline_id"],
                             "state": p["state"], "hub": self.hub,
                             **({"error": attempt.error} if attempt.error else {})})

    def report(self, attempt: Attempt) -> None:
        item, p = attempt.item, attempt.item["payload"]
        outcome = attempt.outcome or "unknown"
        self.sent.labels(outcome).inc()
        what = f"result {p['result_id']} ({p['pipeline_id']}, {p['state']}; series_uid={p['series_uid']})"
        if outcome == outbox.DELIVERED:
            log.info("forward %s: %s delivered%s", item["id"], what,
                     "" if attempt.notes.get("new_at_hub") else " (the hub had it already)")
        else:
            log.warning("forward %s: %s to %s %s: %s", item["id"], what, self.hub,
                        "will be retried" if outcome == "retry" else "given up", attempt.error)
