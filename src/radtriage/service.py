"""The parts of a running radtriage, built once from the settings and shared."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from radtriage.assembly.assembler import Assembler
from radtriage.config import Settings
from radtriage.db import Database, open_database
from radtriage.ingest.metrics import IngestMetrics
from radtriage.ingest.scp import StorageSCP
from radtriage.ingest.spool import Spool
from radtriage.ingest.store import InstanceStore
from radtriage.triage.live import Triage

log = logging.getLogger("radtriage.service")


@dataclass
class Services:
    """Everything the listener, the API and the CLI need, built by `build_services`."""

    settings: Settings
    db: Database
    spool: Spool
    metrics: IngestMetrics
    store: InstanceStore
    secret_key: bytes = b""  # signs one-click links; see `secret_key_for`
    alerts: Any = None  # an `AlertService`, or None when alerting is off
    recognition: Any = None  # the recognition list (`radtriage.recognition`), or None when none is configured

    def close(self) -> None:
        self.db.dispose()


class ProductionConfigError(RuntimeError):
    """Production was asked to start without what it needs; ``problems`` names each missing item."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("production refuses to start; missing:\n" + "\n".join(f"  - {p}" for p in problems))


def check_production(settings: Settings, environ: Mapping[str, str] | None = None) -> None:
    """In production: the signing key, the database URL, the alerting file and every secret its
    channels name must be there, or `ProductionConfigError` lists all that are not."""
    if settings.environment != "production":
        return
    import yaml

    from radtriage.alerts.config import AlertingConfigError, parse_alerting

    environ = os.environ if environ is None else environ
    problems = settings.production_problems()
    path = settings.alerting_file
    try:
        if path is None or not path.exists():
            raise AlertingConfigError(f"alerting_file: {path}: no such file (the stroke-team roster and channels)")
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as exc:
            raise AlertingConfigError(f"{path}: cannot read: {exc}") from None
        config = parse_alerting(data, str(path))
        if config.enabled:
            problems += config.missing_secrets(environ)
    except AlertingConfigError as exc:
        problems.append(str(exc))
    if problems:
        raise ProductionConfigError(problems)


def build_services(settings: Settings) -> Services:
    """Create the data directory, migrate the database, open the spool (production: after `check_production`)."""
    check_production(settings)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    db = open_database(settings.db_url)
    spool = Spool(settings.spool_dir, fsync=settings.fsync, min_free_bytes=settings.min_free_bytes)
    removed = spool.remove_partials()
    if removed:
        log.info("removed %d partial files left by an interrupted write", removed)
    metrics = IngestMetrics()
    store = store_for(settings, db, metrics, spool)
    services = Services(settings=settings, db=db, spool=spool, metrics=metrics, store=store,
                        secret_key=secret_key_for(settings))
    services.alerts = build_alerts(services)
    if settings.recognition_file is not None:  # a bad list stops start-up with the file, key and problem
        from radtriage.recognition import load_list

        services.recognition = load_list(settings.recognition_file)
    return services


def store_for(settings: Settings, db: Database, metrics: IngestMetrics, spool: Spool | None = None) -> InstanceStore:
    """The `InstanceStore` of a process that stores instances (the service, each listener process)."""
    spool = spool or Spool(settings.spool_dir, fsync=settings.fsync, min_free_bytes=settings.min_free_bytes)
    return InstanceStore(db, spool, metrics, max_bytes=settings.max_upload_bytes)


def build_alerts(services: Services) -> Any:
    """The `AlertService` from ``settings.alerting_file`` (built in every process, so any can acknowledge)."""
    from radtriage.alerts.config import AlertingConfigError, load_alerting
    from radtriage.alerts.metrics import AlertMetrics
    from radtriage.alerts.service import AlertService

    settings = services.settings
    path = settings.alerting_file
    try:
        if path is None:
            raise AlertingConfigError("no alerting file configured (alerting_file)")
        if not path.exists():
            raise AlertingConfigError(f"{path}: no such file")
        config = load_alerting(path)
    except AlertingConfigError as exc:
        if settings.environment == "production":
            raise
        log.warning("stroke alerts are OFF: %s", exc)
        return None
    if not config.enabled:
        log.warning("stroke alerts are OFF: %s says enabled: false", path)
        return None
    return AlertService(services.db, config, services.secret_key, AlertMetrics(services.metrics.registry),
                        results_dir=settings.data_dir / "results")


def secret_key_for(settings: Settings) -> bytes:
    """The signing key: ``RADTRIAGE_AUTH__SECRET_KEY``; in development, one made once and kept in the data
    directory (mode 0600) so that a newcomer needs no set-up and links survive a restart."""
    if settings.auth.secret_key is not None:
        return settings.auth.secret_key.get_secret_value().encode()
    from radtriage.security import kept_secret

    return kept_secret(settings.data_dir / "secret_key").encode()


def first_admin(services: Services) -> tuple[str, str] | None:
    """On a first start with no users: an ``admin`` with a random password, returned once to be shown once."""
    from radtriage.db import accounts, audit
    from radtriage.security import new_password

    if accounts.count_users(services.db):
        return None
    password = new_password()
    accounts.add_user(services.db, "admin", "admin", password, "First administrator")
    audit.log(services.db, "user_added", detail={"username": "admin", "role": "admin", "why": "first start"})
    return "admin", password


class Runtime:
    """The background parts of `radtriage serve`: the DICOM listener, assembly and the inference dispatcher."""

    def __init__(self, services: Services, listener_processes: int = 1) -> None:
        self.services = services
        self.listeners = None  # the other DICOM listener processes (`radtriage.ingest.listeners`), if more than one
        if listener_processes > 1:
            from radtriage.ingest.listeners import ListenerProcesses

            self.listeners = ListenerProcesses(services.settings, listener_processes)
            self.scp = StorageSCP(services.settings, services.store, tally=self.listeners.tally.for_listener(0),
                                  shared_port=True)
        else:
            self.scp = StorageSCP(services.settings, services.store)
        self.assembler = Assembler(services.settings, services.db, services.metrics)
        self.dispatcher = None
        self.runner = None
        self.states = None  # a `radtriage.governance.StateBook` once inference starts
        self.monitor = None  # the model monitor's worker (`radtriage.monitor`) once inference starts
        self.exports = None  # results out (`radtriage.exports`) once inference starts, when destinations are set
        self.dose = None  # the dose registry's worker (`radtriage.dose`) when settings.dose_file names one
        self.forward = None  # an edge gateway's forwarding to its hub (`radtriage.forward`) when settings.forward
        settings = services.settings
        self.triage = Triage(services.db, settings.inference.enabled, settings.worklist.poll_s)
        self.started = False

    def start(self) -> None:
        if self.services.settings.forward is not None:  # before inference: the dispatcher queues results for it
            from radtriage.forward.worker import Forwarding

            self.forward = Forwarding(self.services.db, self.services.settings, self.services.metrics.registry)
        if self.services.settings.inference.enabled:
            self._start_inference()
        else:  # signed reports still leave
            self._start_exports([])
        if self.services.settings.dose_file is not None:  # a bad dose file stops start-up, named
            from radtriage.dose.worker import build_worker as build_dose

            self.dose = build_dose(self.services.db, self.services.settings.dose_file, self.services.alerts)
            self.dose.start()
        if self.forward is not None:
            self.forward.start()
        self.triage.start()
        self.scp.start()
        if self.listeners is not None:
            self.listeners.start(self.scp.port)
        self.assembler.start()
        self.started = True

    def _start_inference(self) -> None:
        """Load and check the pipelines (a bad file stops start-up), start Ray Serve and the dispatcher."""
        from radtriage.governance import StateBook
        from radtriage.inference.tasks import OPS
        from radtriage.monitor.worker import build_worker
        from radtriage.pipelines import load_pipelines
        from radtriage.serving.dispatcher import Dispatcher
        from radtriage.serving.runners import make_runner
        from radtriage.triage import result_priority

        settings, alerts = self.services.settings, self.services.alerts
        specs = load_pipelines(settings.inference.pipelines_dir, ops=OPS,
                               alert_policies=alerts.config.policies if alerts is not None else None)
        self.runner = make_runner(specs, settings)
        self.states = StateBook(self.services.db, specs, settings.inference.models_dir, settings.environment)
        self.monitor = build_worker(self.services.db, settings, specs, self.states, self.services.metrics.registry,
                                    alerts)
        paging = alerts.for_pipelines(specs) if alerts is not None else None

        exports = self._start_exports(specs)

        def on_result(*recorded: Any) -> None:  # pages first, then the monitor (which only marks and wakes)
            if paging is not None:
                paging(*recorded)
            self.monitor.recorded(*recorded)
            exports.wake()  # its rows were queued in the recording transaction
            if self.forward is not None and self.forward.sends_results:
                self.forward.worker.wake()  # and so was the result's row for the hub

        self.dispatcher = Dispatcher(settings, self.services.db, specs, self.runner, result_priority,
                                     on_result=on_result, states=self.states.state)
        if exports.enabled:
            self.dispatcher.on_recorded = exports.queue
        if self.forward is not None and self.forward.sends_results:  # forward.ai: edge, to a radtriage hub
            self.dispatcher.on_recorded = self.forward.then_queue_results(self.dispatcher.on_recorded)
        self.dispatcher.start()
        self.monitor.start()
        if alerts is not None:
            alerts.start()
        log.info("inference: %d pipelines (%s) on %s", len(specs),
                 ", ".join(f"{s.id} {self.states.state(s.id).state}" for s in specs),
                 "Ray Serve" if settings.inference.use_ray else "this process")

    def _start_exports(self, specs: list[Any]) -> Any:
        """Results and signed reports out (`radtriage.exports`): its worker runs when a destination is named."""
        from radtriage.exports.worker import Exports

        self.exports = Exports(self.services.db, self.services.settings, specs, self.services.metrics.registry)
        if self.exports.enabled:
            self.exports.start()
        return self.exports

    def stop(self) -> None:
        self.started = False
        if self.listeners is not None:
            self.listeners.stop()
        self.scp.stop()
        self.assembler.stop()
        if self.dose is not None:
            self.dose.stop()
        if self.forward is not None:
            self.forward.stop()
        if self.dispatcher is not None:
            self.dispatcher.stop()
        if self.monitor is not None:
            self.monitor.stop()
        if self.exports is not None and self.exports.enabled:
            self.exports.stop()
        if self.runner is not None:
            self.runner.close()
        if self.services.alerts is not None:
            self.services.alerts.stop()
        self.triage.stop()
