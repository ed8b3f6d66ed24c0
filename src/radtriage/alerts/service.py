"""`AlertService`: the dispatcher's hook, acknowledgement and resolution, the views, and the worker.

Build one per process from the alerting configuration, the database and the
secret that signs acknowledgement links::

    alerts = AlertService(db, load_alerting("configs/alerting.yaml"), secret_key,
                          AlertMetrics(services.metrics.registry), results_dir=data_dir / "results")
    dispatcher = Dispatcher(..., on_result=alerts.for_pipelines(specs))
    alerts.start()   # the delivery worker; alerts.stop() at shutdown

`on_result` decides and writes the alert and its first deliveries in one
transaction before it returns, so nothing decided is lost to a crash; the
worker delivers them (now, or after a restart).
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from sqlalchemy.exc import IntegrityError, OperationalError

from radtriage.alerts import states
from radtriage.alerts.channels import Channels
from radtriage.alerts.config import AlertingConfig
from radtriage.alerts.decide import RECOVERED, Decision, decide
from radtriage.alerts.message import key_image_path
from radtriage.alerts.metrics import AlertMetrics
from radtriage.alerts.rota import gaps
from radtriage.alerts.signing import AckGrant, read_ack_token
from radtriage.alerts.views import AlertView, view
from radtriage.alerts.withdraw import withdraw_pipeline
from radtriage.alerts.worker import AlertWorker
from radtriage.background import brief
from radtriage.db import alerts as store
from radtriage.db.clock import utcnow
from radtriage.db.engine import Database
from radtriage.domain.case import Finding, TaskResult, TriageCase
from radtriage.pipelines import PipelineSpec

log = logging.getLogger(__name__)
RECOVERY_GRACE_S = 30.0  # a result this fresh is still in the dispatcher's hands


class AlertService:
    def __init__(self, db: Database, config: AlertingConfig, secret_key: bytes, metrics: AlertMetrics | None = None,
                 channels: Channels | None = None, environ: Mapping[str, str] | None = None,
                 results_dir: Path | None = None) -> None:
        """``results_dir``: the folder key images must be in (the data directory's ``results``); a key
        image anywhere else is neither stored with an alert, attached nor served."""
        self.db, self.config, self.key = db, config, secret_key
        self.results_dir = results_dir
        self.metrics = metrics or AlertMetrics()
        self.channels = channels or Channels(config, os.environ if environ is None else environ)
        self.pipeline_policies: dict[str, str] = {}
        self.worker = AlertWorker(db, config, self.channels, self.metrics, secret_key, recover=self.recover_missed,
                                  results_dir=results_dir)
        for name, rota in config.rotas.items():
            holes = gaps(config, rota)
            if holes:
                log.warning("rota %s has nobody on call at %d times of the week (first: %s) and no fallback",
                            name, len(holes), holes[0])

    # -- the dispatcher's hook ------------------------------------------------------------
    def for_pipelines(self, specs: Iterable[PipelineSpec]) -> Callable[[TriageCase, str, TaskResult, str], None]:
        """The ``on_result(case, pipeline_id, result, priority)`` hook for pipelines that name an ``alert`` policy."""
        self.pipeline_policies = {s.id: s.alert for s in specs if getattr(s, "alert", None)}
        unknown = sorted(set(self.pipeline_policies.values()) - set(self.config.policies))
        if unknown:
            raise ValueError(f"pipelines name alert policies that configs/alerting.yaml lacks: {', '.join(unknown)}")

        def hook(case: TriageCase, pipeline_id: str, result: TaskResult, priority: str) -> None:
            self.on_result(case, pipeline_id, result, priority, self.pipeline_policies.get(pipeline_id))

        return hook

    def on_result(self, case: TriageCase, pipeline_id: str, result: TaskResult, priority: str,
                  policy_name: str | None, *, new_reason: str = "new", quiet: bool = False,
                  via: str = "dispatcher") -> list[Decision]:
        """Decide whether a newly recorded result pages, and write the alert durably; never raises.

        A negative result, a result without a finding the policy covers, or one
        below the policy's priorities pages nobody. The decision about a recorded
        result is marked (``alert_decisions``) in the transaction that writes its
        alerts, and a result already decided is not decided again. A failure here
        is logged; the periodic recovery sweep decides the result later.
        """
        policy = self.config.policies.get(policy_name or "")
        if not self.config.enabled or policy is None or not result.positive:
            return []
        pages = not policy.priorities or priority in policy.priorities
        findings = [self._checked_key_image(case, f) for f in result.findings if pages and f.code in policy.findings]
        for attempt in range(4):
            try:
                now = utcnow()
                with self.db.write() as conn:
                    result_id = store.result_of_case(conn, case.case_id, pipeline_id)
                    if result_id is not None and store.decided(conn, result_id):
                        return []  # the dispatcher and the sweep both came: the first one decided
                    made = [decide(conn, self.config, policy_name, case, pipeline_id, result, f, priority, now,
                                   new_reason=new_reason, quiet=quiet) for f in findings]
                    if result_id is not None:
                        outcome = ("created" if any(d.outcome == "created" for d in made)
                                   else "duplicate" if made else "not paged")
                        store.record_decision(conn, result_id, now, via, outcome)
                break
            except IntegrityError:  # another thread decided the same finding first: decide again
                continue
            except OperationalError:
                time.sleep(0.2 * 2 ** attempt)
            except Exception as exc:  # noqa: BLE001 - never fail the dispatcher's job over an alert
                log.error("alert decision failed for case %s pipeline %s: %s", case.case_id, pipeline_id, brief(exc))
                return []
        else:
            log.error("alert decision failed for case %s pipeline %s; recovery will retry", case.case_id, pipeline_id)
            return []
        for d in made:
            if quiet and d.outcome == "duplicate":
                continue
            self.metrics.alerts.labels(d.finding, d.outcome).inc()
            if d.outcome == "created":
                log.info("alert %s created for case %s (%s)", d.alert_id, case.case_id, d.finding)
        self.worker.wake()
        return made

    def _checked_key_image(self, case: TriageCase, finding: Finding) -> Finding:
        """The finding, without its key image when that is not a PNG inside the results folder."""
        if finding.key_image and key_image_path(finding.key_image, self.results_dir) is None:
            log.warning("case %s: the key image of finding %s is not a PNG inside the results folder; "
                        "the alert goes without it", case.case_id, finding.code)
            return finding.model_copy(update={"key_image": None})
        return finding

    def recover_missed(self, grace_s: float = RECOVERY_GRACE_S) -> int:
        """Decide every positive result that has no alert decision, however old (a crash between the
        dispatcher recording it and deciding its alert); the alerts made say LATE. How many were created.

        Results younger than ``grace_s`` are left to the dispatcher's own call.
        """
        if not self.pipeline_policies:
            return 0
        rows = store.undecided_positive_results(self.db, sorted(self.pipeline_policies),
                                                utcnow() - dt.timedelta(seconds=grace_s))
        made = 0
        for r in rows:
            decisions = self.on_result(TriageCase.model_validate(r["case"]), r["pipeline_id"],
                                       TaskResult.model_validate(r["result"]), r["priority"],
                                       self.pipeline_policies.get(r["pipeline_id"]), new_reason=RECOVERED, quiet=True,
                                       via="recovery")
            made += sum(d.outcome == "created" for d in decisions)
        if made:
            log.warning("recovered %d alerts for results that had no alert decision", made)
        return made

    # -- people ---------------------------------------------------------------------------------
    def acknowledge(self, alert_id: int, *, actor: str, display_name: str | None = None, via: str = "api",
                    role: str | None = None, member: str | None = None, link_level: int | None = None,
                    client: str | None = None, user_agent: str | None = None) -> states.Outcome:
        """``actor`` (a username) takes the alert. `LookupError` when there is no such alert."""
        member = member or self.config.member_for_username(actor)
        now = utcnow()
        with self.db.write() as conn:
            out = states.acknowledge(conn, self.config, alert_id, now, actor=actor, display_name=display_name or actor,
                                     via=via, member=member, role=role, link_level=link_level, client=client,
                                     user_agent=user_agent)
        if out.event:
            finding = out.alert["finding_code"]
            self.metrics.alerts.labels(finding, "acknowledged").inc()
            self.metrics.ack_seconds.labels(finding).observe((now - out.alert["created_at"]).total_seconds())
            self.worker.wake()
        return out

    def link_grant(self, token: str) -> AckGrant:
        """What a signed acknowledgement link grants; `signing.LinkError` when invalid or expired."""
        return read_ack_token(self.key, token)

    def acknowledge_link(self, token: str, client: str | None = None, user_agent: str | None = None
                         ) -> states.Outcome:
        """Take the alert by a signed link, recording the address and user agent that used it; refused
        (``refused``) when the alert has escalated past the level the link was sent at."""
        grant = self.link_grant(token)
        member = self.config.member(grant.member)
        name = member.name if member else grant.member
        actor = (member.username if member and member.username else f"member:{grant.member}")
        return self.acknowledge(grant.alert_id, actor=actor, display_name=name, via="link", member=grant.member,
                                link_level=grant.level, client=client, user_agent=user_agent)

    def resolve(self, alert_id: int, *, actor: str, reason: str, role: str | None = None) -> states.Outcome:
        with self.db.write() as conn:
            out = states.resolve(conn, alert_id, utcnow(), actor=actor, reason=reason, role=role)
        if out.event:
            self.metrics.alerts.labels(out.alert["finding_code"], "resolved").inc()
        return out

    def withdraw_pipeline(self, pipeline_id: str, action: str, actor: str, role: str | None = None,
                          client: str | None = None) -> list[states.Outcome]:
        """The pipeline was demoted or suspended: withdraw its unresolved alerts (`withdraw.withdraw_pipeline`)."""
        done = withdraw_pipeline(self.db, pipeline_id, action, actor, role=role, client=client)
        for o in done:
            self.metrics.alerts.labels(o.alert["finding_code"], "withdrawn").inc()
        if done:
            self.worker.wake()
        return done

    # -- views --------------------------------------------------------------------------------------
    def active(self) -> list[AlertView]:
        """Alerts not resolved from the last ``active_window_h`` hours, newest first."""
        since = utcnow() - dt.timedelta(hours=self.config.active_window_h)
        return self._views(store.list_alerts(self.db, since=since))

    def get(self, alert_id: int) -> AlertView | None:
        row = store.alert_row(self.db, alert_id)
        return self._views([row])[0] if row else None

    def for_study(self, study_uid: str) -> list[AlertView]:
        rows = store.list_alerts(self.db, study_uid=study_uid, states=(store.OPEN, store.ACKNOWLEDGED, store.RESOLVED))
        return self._views(rows)

    def key_image(self, alert_id: int) -> Path | None:
        """The alert's key image, only if it is a PNG inside the results folder."""
        row = store.alert_row(self.db, alert_id)
        return key_image_path(row["key_image"], self.results_dir) if row else None

    def _views(self, rows: list[dict[str, Any]]) -> list[AlertView]:
        deliveries: dict[int, list[dict[str, Any]]] = {}
        for d in store.deliveries_for(self.db, [r["id"] for r in rows]):
            deliveries.setdefault(d["alert_id"], []).append(d)
        return [view(self.config, r, deliveries.get(r["id"], [])) for r in rows]

    # -- lifetime -------------------------------------------------------------------------------------
    def start(self) -> None:
        self.worker.start()

    def stop(self) -> None:
        self.worker.stop()
        self.channels.close()
