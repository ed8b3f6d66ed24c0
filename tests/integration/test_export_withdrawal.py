"""Demoting a pipeline withdraws what was exported of its results on unread studies, in the decision's
transaction (a read study's report stands on what the reader saw)."""

from __future__ import annotations

from sqlalchemy import select

from radtriage.db import ledger
from radtriage.db.clock import utcnow
from radtriage.db.tables import outbox
from radtriage.exports import plan
from radtriage.exports.model import WITHDRAWN
from radtriage.triage import seed
from tests.integration.test_export_plan import DESTS
from tests.integration.test_model_decisions import api  # noqa: F401 - fixture


def test_demotion_withdraws_the_exports_of_unread_studies_only(api) -> None:  # noqa: F811
    db = api.services.db
    uids = seed.seed(db, 8, pending_fraction=0.0, positive_fraction=1.0)
    unread, claimed = uids[0], uids[4]  # positive stroke_ich studies (see test_model_decisions)
    ich = {u: [r for r in ledger.result_rows(db, u) if r["pipeline_id"] == "stroke_ich"] for u in (unread, claimed)}
    with db.write() as conn:
        plan.queue_new(conn, DESTS, [{**r, "state": "live"} for rows in ich.values() for r in rows], utcnow())
    assert api.post(f"/api/v1/studies/{claimed}/claim", headers=api.as_["radiologist"]).status_code == 200
    r = api.post("/api/v1/models/stroke_ich/demote", headers=api.as_["admin"], json={"reason": "false pages"})
    assert r.status_code == 200, r.text
    with db.read() as conn:
        withdrawn = [(row.subject, row.target, row.payload["reason"]) for row in conn.execute(
            select(outbox).where(outbox.c.kind == "export").order_by(outbox.c.id)) if row.payload["status"] == WITHDRAWN]
    unread_ids = {str(x["id"]) for x in ich[unread]}
    assert withdrawn and {s for s, _, _ in withdrawn} == unread_ids
    assert {t for _, t, _ in withdrawn} == {"pacs", "ris"} and all("AI under review" in w for *_, w in withdrawn)
