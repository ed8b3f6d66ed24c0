"""The exports on the API: where each result of a study went (any reader), the admin's list of exports that did
not leave, and its two actions (send again, give up), each audited; other roles are refused."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select, update

from radtriage.config.exports import ExportSettings
from radtriage.db import audit, ledger
from radtriage.db.tables import outbox
from radtriage.exports import plan
from tests.integration.test_export_plan import _job, _result
from tests.integration.test_worklist_api import api  # noqa: F401 - fixture

DESTS = ExportSettings(dicom=[{"name": "pacs", "ae_title": "PACS", "host": "127.0.0.1", "port": 104}],
                       hl7=[{"name": "ris", "host": "127.0.0.1", "port": 2575}])
NOW = dt.datetime(2026, 12, 7, 9, 0, tzinfo=dt.UTC)


def test_study_exports_and_the_admins_retry_and_give_up(api) -> None:  # noqa: F811
    db = api.services.db
    ledger.record_results(db, _job(db, "1.2.9", "1.2.9.1"), [_result("stroke_ich", "1.2.9", "1.2.9.1")], now=NOW,
                          then=lambda conn, rec, now: plan.queue_new(conn, DESTS, rec, now))
    with db.write() as conn:
        ids = list(conn.execute(select(outbox.c.id).where(outbox.c.kind == "export").order_by(outbox.c.id)).scalars())
        conn.execute(update(outbox).where(outbox.c.id == ids[0]).values(
            state="failed", attempts=8, last_error="pacs: C-STORE status 0xA700", finished_at=NOW))
        conn.execute(update(outbox).where(outbox.c.id == ids[1]).values(attempts=2, last_error="ris: refused: AE"))
    listed = api.get("/api/v1/studies/1.2.9/exports", headers=api.as_["radiologist"]).json()
    assert [(x["destination"], x["channel"], x["status"], x["state"]) for x in listed] == [
        ("pacs", "dicom", "preliminary", "refused"), ("ris", "hl7", "preliminary", "retrying")]
    assert api.get("/api/v1/exports/failed", headers=api.as_["radiologist"]).status_code == 403
    failed = api.get("/api/v1/exports/failed", headers=api.as_["admin"]).json()
    assert {x["id"] for x in failed} == set(ids) and all(x["study_uid"] == "1.2.9" for x in failed)
    assert api.post(f"/api/v1/exports/{ids[0]}/retry", headers=api.as_["stroke"]).status_code == 403
    assert api.post(f"/api/v1/exports/{ids[0]}/retry", headers=api.as_["admin"]).status_code == 200
    assert api.post(f"/api/v1/exports/{ids[0]}/retry", headers=api.as_["admin"]).status_code == 409  # not failed now
    assert api.post(f"/api/v1/exports/{ids[1]}/give-up", headers=api.as_["admin"]).status_code == 200
    with db.read() as conn:
        states = dict(conn.execute(select(outbox.c.id, outbox.c.state).where(outbox.c.id.in_(ids))).all())
    assert states == {ids[0]: "pending", ids[1]: "cancelled"}
    actions = [e["action"] for e in audit.entries(db, limit=50)[1]]
    assert "export_retry" in actions and "export_give_up" in actions


def test_a_failed_report_delivery_is_listed_with_its_study(api) -> None:  # noqa: F811
    from radtriage.db import outbox as rows
    from radtriage.db.tables import reports

    db = api.services.db
    with db.write() as conn:
        rid = conn.execute(reports.insert().values(study_uid="1.2.10", state="signed", body={}, removed=[],
                                                   result_ids=[], languages=[], revision=0, created_at=NOW,
                                                   updated_at=NOW)
                           ).inserted_primary_key[0]
        row = rows.add(conn, "export", f"export:report-{rid}:ris:r0", subject=f"report-{rid}", target="ris",
                       channel="hl7", payload={"report_id": rid, "status": "final", "revision": 0}, now=NOW)
        conn.execute(update(outbox).where(outbox.c.id == row).values(state="failed", last_error="ris: AR"))
    failed = api.get("/api/v1/exports/failed", headers=api.as_["admin"]).json()
    assert [(x["id"], x["study_uid"], x["result_id"], x["status"]) for x in failed] == [(row, "1.2.10", None, "final")]
