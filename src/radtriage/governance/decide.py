"""Decisions on a pipeline: promote (shadow -> live, on evidence), demote (-> shadow), suspend (not run).

One function for the CLI (`radtriage models`) and the API (`/api/v1/models`): `decide` checks the admin,
the reason and, for a promotion, the evidence against the pipeline's floors; it writes the decision and
its audit entry in one transaction (a refused promotion is audited too, with its shortfalls), then
re-triages the unread studies holding the pipeline's live results, so a demoted or suspended
pipeline's flags leave them ("AI under review") and a promoted one's come back. A demotion or suspension
also calls the ``withdraw`` hook the caller passes (the alerts' `withdraw_pipeline`: governance sits
below alerts and does not import them), which stops the pipeline's open alerts and tells those already
paged.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from functools import partial
from typing import Any

from radtriage.config import Settings
from radtriage.db import accounts, audit, worklist
from radtriage.db import exports as export_rows
from radtriage.db import governance as rows
from radtriage.db.clock import utcnow
from radtriage.db.engine import Database
from radtriage.exports import plan as export_plan
from radtriage.governance.evidence import floors_for, measured, shortfalls
from radtriage.governance.report import commission
from radtriage.monitor.baseline import kept_scores  # a leaf: the monitor's baseline from evidence
from radtriage.governance.state import Fingerprint, PipelineState, fingerprint, resolve
from radtriage.pipelines import PipelineSpec, load_pipelines
from radtriage.triage.priority import triage_study

ACTIONS = {"promote": ("live", "model_promoted"), "demote": ("shadow", "model_demoted"),
           "suspend": ("suspended", "model_suspended")}


class DecisionRefused(ValueError):
    """A decision that cannot be taken; ``problems`` names each reason (e.g. each shortfall of the evidence)."""

    def __init__(self, pipeline_id: str, action: str, problems: list[str]) -> None:
        self.pipeline_id, self.action, self.problems = pipeline_id, action, problems
        super().__init__(f"{action} {pipeline_id} refused: " + "; ".join(problems))


def pipelines(settings: Settings) -> dict[str, PipelineSpec]:
    """The configured pipelines by id (as the service loads them)."""
    return {s.id: s for s in load_pipelines(settings.inference.pipelines_dir)}


def overview(db: Database, settings: Settings) -> list[dict[str, Any]]:
    """Each pipeline: what runs (fingerprint), its state now and why, its floors and its decisions."""
    out = []
    for spec in pipelines(settings).values():
        fp = fingerprint(spec, settings.inference.models_dir)
        taken = rows.decisions(db, spec.id)
        state = resolve(fp, taken, settings.environment)
        out.append({"pipeline_id": spec.id, "task": spec.task, "model_id": fp.model_id,
                    "model_version": fp.model_version, "thresholds": dict(fp.thresholds), "state": state.state,
                    "reason": state.reason, "source": state.source,
                    "floors": floors_for(spec).model_dump(exclude_none=True), "decisions": taken})
    return out


def _kept(spec: PipelineSpec, fp: Fingerprint, doc: dict[str, Any], carry_over: bool) -> dict[str, Any]:
    """What a promotion keeps of its evidence: the document (without its per-case rows) and its sha256, the
    values compared and the floors they met."""
    digest = hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()
    return {"sha256": digest, "carried_over": carry_over, "measured": measured(fp.task, doc),
            "floors": floors_for(spec).model_dump(exclude_none=True),
            "document": {k: v for k, v in doc.items() if k != "cases"},
            "scores": kept_scores(fp.task, doc)}  # each case's score and truth: the monitor's baseline


SYSTEM_ACTORS = ("monitor",)  # decide without an account, audited with role "system"; never promote


def _admin(db: Database, username: str, role: str, action: str = "") -> list[str]:
    if role == "system":
        allowed = username in SYSTEM_ACTORS and action != "promote"
        return [] if allowed else [f"the system may not {action} as {username!r}"]
    account = accounts.get_user(db, username)
    if role != "admin" or account is None or account.role != "admin" or account.disabled:
        return [f"{username!r} is not an active admin account: only an admin decides"]
    return []


def _evidence(db: Database, settings: Settings, pipeline_id: str,
              given: dict[str, Any] | str | None) -> tuple[dict[str, Any] | None, list[str]]:
    """The evidence of a promotion: the metrics.json given, or for ``"shadow"`` the silent trial's so far
    (`radtriage.governance.reads`); else None and why."""
    from radtriage.governance.reads import shadow_evidence
    from radtriage.validation.run import ValidationError

    if isinstance(given, dict):
        return given, []
    if given != "shadow":
        return None, ["evidence is needed (the metrics.json of radtriage validate, or 'shadow': the silent trial's "
                      "reads)"] if given is None else ["evidence is a metrics.json document or 'shadow'"]
    try:
        return shadow_evidence(db, settings, pipeline_id), []
    except ValidationError as exc:
        return None, [f"no silent-trial evidence: {exc}"]


def decide(db: Database, settings: Settings, pipeline_id: str, action: str, reason: str, by: str,
           role: str = "admin", client: str | None = None, evidence: dict[str, Any] | str | None = None,
           carry_over: bool = False, withdraw: Callable[..., Any] | None = None,
           key: bytes | None = None) -> dict[str, Any]:
    """Take ``action`` (promote | demote | suspend) on ``pipeline_id``; returns the decision row, or raises
    `DecisionRefused` naming each problem. ``evidence`` is a metrics.json document, or ``"shadow"``: the
    pipeline's silent-trial reads so far. The decision is signed with ``key`` (the site's signing key; by
    default `radtriage.service.secret_key_for`) and kept with its commissioning report
    (`radtriage.governance.report`). After a demotion or suspension, ``withdraw(pipeline_id, action, by,
    role=, client=)`` withdraws the pipeline's alerts."""
    specs = pipelines(settings)
    if pipeline_id not in specs:
        raise DecisionRefused(pipeline_id, action, [f"no pipeline {pipeline_id!r}; there: {', '.join(sorted(specs))}"])
    spec, (state, done) = specs[pipeline_id], ACTIONS[action]
    fp = fingerprint(spec, settings.inference.models_dir)
    problems = _admin(db, by, role, action) + ([] if reason.strip() else ["a reason is needed"])
    kept = None
    if action == "promote":
        evidence, missing = _evidence(db, settings, pipeline_id, evidence)
        problems += missing if evidence is None else shortfalls(spec, fp, evidence, carry_over)
        kept = _kept(spec, fp, evidence, carry_over) if evidence is not None else None
    detail = {"pipeline": pipeline_id, "model": f"{fp.model_id} {fp.model_version}", "state": state,
              "reason": reason.strip()[:500]}
    if problems:
        audit.log(db, f"model_{action}_refused", actor=by, role=role, client=client,
                  detail={**detail, "problems": problems})
        raise DecisionRefused(pipeline_id, action, problems)
    if key is None:
        from radtriage.service import secret_key_for

        key = secret_key_for(settings)
    values = {**fp.identity(), "state": state, "action": action, "reason": reason.strip(), "evidence": kept,
              "decided_by": by, "decided_at": utcnow().replace(microsecond=0)}
    with db.write() as conn:
        decision_id = rows.record_decision(conn, values, values["decided_at"])
        rows.record_report(conn, decision_id, *commission(key, {**values, "id": decision_id}))
        audit.record(conn, done, actor=by, role=role, client=client,
                     detail={**detail, "decision": decision_id, **({"evidence": kept["sha256"]} if kept else {})})
        if action != "promote":  # what was sent of its results on unread studies is withdrawn with it
            export_plan.queue_withdrawal(conn, export_rows.exported_unread_results(conn, pipeline_id),
                                         f"AI under review: {pipeline_id} {state}", values["decided_at"])
    retriage(db, settings, pipeline_id)
    if withdraw is not None and action != "promote":
        withdraw(pipeline_id, action, by, role=role, client=client)
    return next(d for d in rows.decisions(db, pipeline_id) if d["id"] == decision_id)


def retriage(db: Database, settings: Settings, pipeline_id: str) -> int:
    """Triage again each unread study holding a live result of the pipeline; how many changed priority."""
    rule = partial(triage_study, inference_enabled=settings.inference.enabled, withdrawn=rows.withdrawn(db))
    return sum(worklist.refresh_study(db, sid, rule) is not None for sid in rows.unread_studies_with(db, pipeline_id))


def state_now(db: Database, settings: Settings, pipeline_id: str) -> PipelineState:
    spec = pipelines(settings)[pipeline_id]
    return resolve(fingerprint(spec, settings.inference.models_dir), rows.decisions(db, pipeline_id),
                   settings.environment)
