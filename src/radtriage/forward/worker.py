"""An edge gateway as a part of `radtriage serve`: the sweep that queues, and the outbox worker that forwards.

The sweep runs right after ingest, off its hot path: every ``sweep_s`` it queues one forward row for each
stored instance whose bytes have none yet, and one series check for each closed series version whose
instance rows are all finished (delivered, or given up). What it reads is the index, which holds every
acknowledged instance, so a crash between the store and the sweep loses nothing: the next sweep (a full
one at start and every `FULL_SWEEP_S`) finds it. Between full sweeps it reads what arrived or closed since
its last pass less `OVERLAP`, so a transaction that committed late is not missed.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry
from sqlalchemy import Connection

from radtriage.background import Background
from radtriage.config import Settings
from radtriage.config.forward import ForwardSettings
from radtriage.db import forward as rows
from radtriage.db.clock import utcnow
from radtriage.db.engine import Database
from radtriage.forward import results
from radtriage.forward.sender import ForwardSender, queue_check, queue_instance
from radtriage.outbox import OutboxWorker, Sender

log = logging.getLogger("radtriage.forward")

OVERLAP = dt.timedelta(seconds=60)
FULL_SWEEP_S = 600.0


class ForwardSweep(Background):
    """Queues the forward rows of new instances and the checks of closed series."""

    def __init__(self, db: Database, cfg: ForwardSettings, hub: str, on_queued) -> None:
        super().__init__("forward-sweep", cfg.sweep_s, log=log)
        self.db, self.cfg, self.hub, self.on_queued = db, cfg, hub, on_queued
        self.instances_since: dt.datetime | None = None  # None: a full sweep
        self.series_since: dt.datetime | None = None
        self.last_full = 0.0

    def run_once(self) -> int:
        """One pass; how many rows it queued."""
        if time.monotonic() - self.last_full > FULL_SWEEP_S:
            self.instances_since = self.series_since = None
            self.last_full = time.monotonic()
        start = utcnow()
        n = 0
        with self.db.read() as conn:  # reads first: an idle sweep takes no write lock
            found = rows.unqueued_instances(conn, self.instances_since)
            new = {i["series_uid"] for i in found} if len(found) < 1000 else None  # None: maybe any series
            closed = [(s, new is None or s["series_uid"] in new or rows.in_flight(conn, s["series_uid"]) > 0)
                      for s in rows.unchecked_series(conn, self.series_since)]
        if found or any(not busy for _, busy in closed):
            with self.db.write() as conn:
                for inst in found:
                    n += queue_instance(conn, self.hub, self.cfg.channel, inst, start)
                for s, busy in closed:
                    if not busy:
                        n += queue_check(conn, self.hub, s["study_uid"], s["series_uid"], s["version"], start)
        if len(found) < 1000:  # all of them queued: the next pass reads from here
            self.instances_since = start - OVERLAP
        # a series whose instances are still on their way is checked once they have left
        self.series_since = min([start - OVERLAP, *(s["closed_at"] for s, busy in closed if busy)])
        if n:
            self.on_queued()
        return n

    def step(self, index: int) -> bool:
        return self.run_once() >= 1000


class Forwarding:
    """The edge's forwarding: the sweep, and an `OutboxWorker` of kind ``forward`` with its own threads (a hub
    that is away never delays a stroke page or an export)."""

    def __init__(self, db: Database, settings: Settings, registry: CollectorRegistry | None = None) -> None:
        assert settings.forward is not None
        cfg = settings.forward
        self.cfg = cfg
        self.sender = ForwardSender(cfg, settings.ae_title, registry)
        senders: dict[str, Sender] = {rows.KIND: self.sender}
        if cfg.results_url is not None:  # ai: edge, to a radtriage hub: this edge's results go too
            senders[results.KIND] = results.ResultSender(cfg, self.sender.client, self.sender.retry,
                                                         self.sender.hub_name, registry)
        self.worker = OutboxWorker(db, senders, name="forward", idle_s=0.5, threads=cfg.threads)
        self.sweep = ForwardSweep(db, cfg, self.sender.hub_name, self.worker.wake)

    @property
    def sends_results(self) -> bool:
        return self.cfg.results_url is not None

    def then_queue_results(self, before: Callable[..., Any] | None) -> Callable[..., Any]:
        """The dispatcher's ``on_recorded``: ``before`` (the exports' queue, if any), then this edge's results
        queued for the hub, in the same recording transaction."""

        def on_recorded(conn: Connection, recorded: list[dict[str, Any]], now: dt.datetime) -> None:
            if before is not None:
                before(conn, recorded, now)
            results.queue_results(conn, self.cfg, self.sender.hub_name, recorded, now)

        return on_recorded

    def start(self) -> None:
        cfg = self.cfg
        hub = (f"{cfg.dicom.ae_title}@{cfg.dicom.host}:{cfg.dicom.port}" + (" (TLS)" if cfg.dicom.tls else "")
               if cfg.dicom is not None else cfg.stow_url)
        log.info("forward: edge gateway of site %s to %s (%s); series checked by %s; issuer %s; AI at the %s%s",
                 cfg.site, hub, cfg.channel, "the hub's API" if cfg.check_url else "Storage Commitment",
                 "added where empty" if cfg.issuer else "not configured", cfg.ai,
                 " (its results sent to the hub's API)" if self.sends_results else "")
        self.worker.start()
        self.sweep.start()

    def stop(self) -> None:
        self.sweep.stop()
        self.worker.stop()
        self.sender.close()
