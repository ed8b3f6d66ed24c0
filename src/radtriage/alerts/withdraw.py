"""Withdrawing a pipeline's alerts when the pipeline is demoted or suspended ("AI under review").

`withdraw_pipeline` needs only the database, so the process that takes the decision (the API, or the
`radtriage models` CLI without an alert worker of its own) withdraws in one transaction: each alert of
the pipeline not yet resolved is resolved with the reason (no more escalation), its unsent pages are
cancelled and each member already paged gets one "withdrawn" message through the outbox, which the
running alert worker delivers. Each withdrawal is audited (``alert_withdrawn``).
"""

from __future__ import annotations

from radtriage.alerts import states
from radtriage.db import alerts as store
from radtriage.db.clock import utcnow
from radtriage.db.engine import Database

ACTIONS = {"demote": "demoted", "suspend": "suspended"}


def reason_for(pipeline_id: str, action: str) -> str:
    return f"AI under review: {pipeline_id} {ACTIONS.get(action, action)}"


def withdraw_pipeline(db: Database, pipeline_id: str, action: str, actor: str, role: str | None = None,
                      client: str | None = None) -> list[states.Outcome]:
    """Withdraw every unresolved alert raised from ``pipeline_id``'s results after ``action`` (demote |
    suspend) by ``actor``; the withdrawals made."""
    reason = reason_for(pipeline_id, action)
    now = utcnow()
    with db.write() as conn:
        done = [states.withdraw(conn, a, now, actor=actor, reason=reason, role=role, client=client)
                for a in store.unresolved_of_pipeline(conn, pipeline_id)]
    return [o for o in done if o.event]
