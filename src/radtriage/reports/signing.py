"""The rules of a report: who edits and signs it, what a signature freezes, what leaves and when.

- Radiologists edit, remove AI findings and sign; everyone else reads. A study claimed by another reader is
  theirs to report.
- A draft is made from the study's live AI results (`radtriage.reports.draft`) and stored at its first
  save; autosaves carry the revision they were based on, so two editors never overwrite each other.
- Removing an AI finding from the draft is a reader's "disagree" on it (`worklist.add_feedback`, with the
  caller's ``then``, which withdraws what was exported of the result), in the same transaction.
- Signing makes the report final: it is stored with who signed and when, audited, and queued to every
  destination as final. It is never changed afterwards: a change is an addendum, signed when it is made and
  sent as an amendment. A draft leaves only where the site allows it (``reports.send_drafts``), as
  preliminary.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from sqlalchemy import Connection

from radtriage.config import Settings
from radtriage.db import audit, worklist
from radtriage.db import reports as rows
from radtriage.db.clock import utcnow
from radtriage.db.engine import Database
from radtriage.db.errors import ActionRefused, Refusal
from radtriage.exports import plan
from radtriage.exports.model import AMENDED, FINAL, PRELIMINARY
from radtriage.reports import DRAFT, SECTIONS, SIGNED
from radtriage.reports.draft import draft, live_results
from radtriage.reports.sections import body_of
from radtriage.reports.templating import Templates

MAX_TEXT = 20_000


class Reports:
    """A study's report as the API uses it (``user``: an object with ``id``, ``username``, ``role`` and
    ``display_name``)."""

    def __init__(self, db: Database, settings: Settings, templates: Templates | None = None,
                 about: Mapping[str, Mapping[str, Any]] | None = None) -> None:
        self.db, self.settings = db, settings
        self.templates = templates or Templates(settings.reports.templates_dir)
        self.about = dict(about or {})

    # --- reading --------------------------------------------------------------------------------

    def _body(self, conn: Connection, study_uid: str, removed: list[str]) -> tuple[dict[str, Any], list[int]]:
        study, results, headers = rows.study_rows(conn, study_uid)
        texts = draft(self.templates, study, results, headers, removed, self.about)
        body = {code: {"sections": texts[code], "headings": dict(lang.headings), "name": lang.name,
                       "review": lang.review} for code, lang in self.templates.languages.items()}
        return body, [r["id"] for r in live_results(results)]

    def current(self, study_uid: str) -> dict[str, Any]:
        """The stored report, or a draft made now (not stored: ``id`` None, state ``new``); ``stale`` when the
        study's live results changed since the stored draft was made; ``findings``: the live AI findings a
        reader may remove (``removed`` when they were)."""
        with self.db.read() as conn:
            report = rows.get(conn, study_uid)
            removed = list(report["removed"]) if report else []
            body, result_ids = self._body(conn, study_uid, removed)
            findings = [{"result_id": r["id"], "index": i, "code": f["code"], "text": f["text"],
                         "removed": f"{r['id']}:{i}" in removed}
                        for r in live_results(rows.study_rows(conn, study_uid)[1])
                        for i, f in enumerate(r["result"].get("findings", [])) if not f["code"].startswith("series:")]
            if report is None:
                report = {"id": None, "study_uid": study_uid, "state": "new", "body": body, "removed": [],
                          "result_ids": result_ids, "languages": [], "revision": 0, "addenda": []}
            report["stale"] = report["state"] == DRAFT and sorted(report["result_ids"]) != sorted(result_ids)
            report["exports"] = rows.exports_of(conn, report["id"]) if report["id"] else []
            report["findings"] = findings
            return report

    # --- editing ----------------------------------------------------------------------------------

    def _may_edit(self, conn: Connection, study_uid: str, user: Any) -> None:
        if user.role != "radiologist":
            raise ActionRefused(Refusal.NOT_YOURS, "only a radiologist edits or signs a report")
        entry = rows.reading_state(conn, study_uid)
        if entry is None:
            raise ActionRefused(Refusal.MISSING, f"no study {study_uid} on the worklist")
        if entry["status"] == "claimed" and entry["claimed_by"] not in (None, user.username):
            raise ActionRefused(Refusal.NOT_YOURS, f"claimed by {entry['claimed_by']}",
                                claimed_by=entry["claimed_by"])

    def _stored(self, conn: Connection, study_uid: str, user: Any, now: Any) -> dict[str, Any]:
        report = rows.get(conn, study_uid, lock=True)
        if report is None:
            body, result_ids = self._body(conn, study_uid, [])
            report = rows.create(conn, study_uid, body, result_ids, now, user.username)
        return report

    def _draft_only(self, report: Mapping[str, Any]) -> None:
        if report["state"] != DRAFT:
            raise ActionRefused(Refusal.CONFLICT, "the report is signed: a change is an addendum", state=report["state"])

    def save(self, study_uid: str, user: Any, language: str, sections: Mapping[str, str], revision: int,
             client: str | None = None) -> dict[str, Any]:
        """Autosave one language's sections (those given) of the draft, based on ``revision``."""
        if language not in self.templates.languages or not set(sections) <= set(SECTIONS):
            raise ActionRefused(Refusal.CONFLICT, f"unknown language or section: {language}")
        if any(len(v) > MAX_TEXT for v in sections.values()):
            raise ActionRefused(Refusal.CONFLICT, f"a section is longer than {MAX_TEXT} characters")
        now = utcnow()
        with self.db.write() as conn:
            self._may_edit(conn, study_uid, user)
            report = self._stored(conn, study_uid, user, now)
            self._draft_only(report)
            body = dict(report["body"])
            text, headings = body_of(body.get(language))
            body[language] = {**body.get(language, {}), "sections": {**text, **sections}, "headings": headings}
            new = rows.save(conn, report, revision if report["revision"] else None, now, user.username, body=body)
            audit.record(conn, "report_draft_saved", user.username, user.role, study_uid, client=client, at=now,
                         detail={"report": report["id"], "language": language, "sections": sorted(sections),
                                 "revision": new})
        return self.current(study_uid)

    def redraft(self, study_uid: str, user: Any, client: str | None = None) -> dict[str, Any]:
        """Make the draft again from the study's live results now (edits to the draft are replaced)."""
        now = utcnow()
        with self.db.write() as conn:
            self._may_edit(conn, study_uid, user)
            report = self._stored(conn, study_uid, user, now)
            self._draft_only(report)
            body, result_ids = self._body(conn, study_uid, list(report["removed"]))
            rows.save(conn, report, None, now, user.username, body=body, result_ids=result_ids)
            audit.record(conn, "report_redrafted", user.username, user.role, study_uid, client=client, at=now,
                         detail={"report": report["id"], "results": result_ids})
        return self.current(study_uid)

    def remove_finding(self, study_uid: str, user: Any, result_id: int, index: int, comment: str | None,
                       client: str | None = None,
                       then: Callable[[Connection, int, str, Any], Any] | None = None) -> dict[str, Any]:
        """Take an AI finding out of the draft: a "disagree" on it (feedback, ``then``: the withdrawal of its
        exports), and the findings and impression of every language made again without it."""
        with self.db.read() as conn:
            self._may_edit(conn, study_uid, user)
            report = rows.get(conn, study_uid)
            if report is not None:
                self._draft_only(report)
            _, results, _ = rows.study_rows(conn, study_uid)
        hit = next((r for r in live_results(results) if r["id"] == result_id), None)
        findings = hit["result"].get("findings", []) if hit else []
        if not 0 <= index < len(findings) or findings[index]["code"].startswith("series:"):
            raise ActionRefused(Refusal.MISSING, f"no AI finding {index} of result {result_id} in this draft")

        def remove(conn: Connection, rid: int, verdict: str, now: Any) -> None:
            if then is not None:
                then(conn, rid, verdict, now)
            stored = self._stored(conn, study_uid, user, now)
            self._draft_only(stored)
            removed = sorted({*stored["removed"], f"{result_id}:{index}"})
            fresh, _ = self._body(conn, study_uid, removed)
            body = {code: {**fresh[code], "sections": {**body_of(stored["body"].get(code))[0],
                                                       **{s: fresh[code]["sections"][s] for s in ("findings", "impression")}}}
                    for code in fresh}
            rows.save(conn, stored, None, now, user.username, body=body, removed=removed)

        worklist.add_feedback(self.db, study_uid, result_id, findings[index]["code"], user.id, user.username,
                              user.role, "disagree", comment or "removed from the report draft", client, then=remove)
        return self.current(study_uid)

    # --- signing and sending ---------------------------------------------------------------------------

    def sign(self, study_uid: str, user: Any, languages: list[str], revision: int,
             client: str | None = None) -> dict[str, Any]:
        """Sign the draft (as it was at ``revision``) in ``languages``: final, stored, audited and queued."""
        now = utcnow()
        with self.db.write() as conn:
            self._may_edit(conn, study_uid, user)
            report = self._stored(conn, study_uid, user, now)
            self._draft_only(report)
            if report["revision"] and report["revision"] != revision:
                raise ActionRefused(Refusal.CONFLICT, "the draft changed since you read it", revision=report["revision"])
            langs = [code for code in report["body"] if code in languages]
            if not langs:
                raise ActionRefused(Refusal.CONFLICT, "choose the language(s) to sign")
            for code in langs:
                sections, _ = body_of(report["body"][code])
                if not (sections.get("findings") or "").strip() or not (sections.get("impression") or "").strip():
                    raise ActionRefused(Refusal.CONFLICT, f"the {code} findings and impression must not be empty")
            rows.sign(conn, report, user.id, user.display_name or user.username, langs, now)
            audit.record(conn, "report_signed", user.username, user.role, study_uid, client=client, at=now,
                         detail={"report": report["id"], "languages": langs, "revision": report["revision"]})
            self._queue(conn, report, FINAL, now)
        return self.current(study_uid)

    def addendum(self, study_uid: str, user: Any, language: str, text: str, client: str | None = None
                 ) -> dict[str, Any]:
        """A signed addendum to a signed report, sent as an amendment."""
        if not text.strip() or len(text) > MAX_TEXT or language not in self.templates.languages:
            raise ActionRefused(Refusal.CONFLICT, "an addendum needs its text and a known language")
        now = utcnow()
        with self.db.write() as conn:
            self._may_edit(conn, study_uid, user)
            report = rows.get(conn, study_uid, lock=True)
            if report is None or report["state"] != SIGNED:
                raise ActionRefused(Refusal.CONFLICT, "only a signed report takes an addendum: edit the draft")
            aid = rows.add_addendum(conn, report["id"], language, text.strip(), user.id,
                                    user.display_name or user.username, now)
            audit.record(conn, "report_addendum", user.username, user.role, study_uid, client=client, at=now,
                         detail={"report": report["id"], "addendum": aid, "language": language})
            self._queue(conn, report, AMENDED, now)
        return self.current(study_uid)

    def send_preliminary(self, study_uid: str, user: Any, client: str | None = None) -> dict[str, Any]:
        """Send the draft as preliminary, where the site allows drafts to leave at all."""
        if not self.settings.reports.send_drafts:
            raise ActionRefused(Refusal.CONFLICT, "this site does not send drafts (reports.send_drafts is off)")
        now = utcnow()
        with self.db.write() as conn:
            self._may_edit(conn, study_uid, user)
            report = self._stored(conn, study_uid, user, now)
            self._draft_only(report)
            n = self._queue(conn, report, PRELIMINARY, now)
            audit.record(conn, "report_sent_preliminary", user.username, user.role, study_uid, client=client, at=now,
                         detail={"report": report["id"], "destinations": n})
        return self.current(study_uid)

    def _queue(self, conn: Connection, report: Mapping[str, Any], status: str, now: Any) -> int:
        pipelines = [r["pipeline_id"] for r in rows.study_rows(conn, report["study_uid"])[1]
                     if r["id"] in report["result_ids"]]
        return plan.queue_report(conn, self.settings.exports, report["id"], pipelines, status, now)
