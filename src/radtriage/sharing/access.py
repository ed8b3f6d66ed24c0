"""Who is let into a share, and when: the rules every open, page, frame, download and DICOMweb request passes.

A browser opens a share with the link's id and key and the passcode (and, for a share to a named hospital, the
hospital's token): one open is counted and a session of `SESSION_MINUTES` (never past the share's expiry) is
given, its cookie holding the session token and the key. Pages, frames and the download under that session
need the session to be valid and the share neither revoked, locked nor expired; they count no further open.
A receiving hospital's system sends ``Authorization: Bearer <hospital token>.<key>`` to WADO-RS; a retrieve of
the whole study counts one open. A wrong passcode or token counts a try; at `MAX_TRIES` the share locks.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from radtriage.db import shares as share_rows
from radtriage.db.engine import Database
from radtriage.security import new_token, token_digest
from radtriage.sharing.crypto import WrongKey, digest_ok, key_from_text, lookup_of, passcode_ok
from radtriage.sharing.model import MAX_TRIES, SESSION_MINUTES, Refusal, ShareRefused
from radtriage.sharing.store import Sealed

HOLDER = "share-holder"


@dataclass(frozen=True)
class Opened:
    """A share let in: its row, its sealed folder with the key, who (actor) and the session token if new."""

    row: dict[str, Any]
    sealed: Sealed
    actor: str
    session: str | None = None


def refusal_of(row: dict[str, Any] | None, now: datetime, counting: bool) -> Refusal | None:
    """Why the share cannot be used now (``counting``: for a new open, which also needs an open left)."""
    if row is None:
        return Refusal.UNKNOWN
    if row["revoked_at"] is not None:
        return Refusal.REVOKED
    if row["locked_at"] is not None:
        return Refusal.LOCKED
    if row["expires_at"] <= now:
        return Refusal.EXPIRED
    if counting and row["opens"] >= row["max_opens"]:
        return Refusal.USED_UP
    return None


def find(db: Database, share_id: str, now: datetime, counting: bool) -> dict[str, Any]:
    row = share_rows.by_lookup(db, lookup_of(share_id)) if len(share_id) <= 64 else None
    if (refusal := refusal_of(row, now, counting)) is not None:
        raise ShareRefused(refusal)
    assert row is not None
    return row


def for_hospital(db: Database, share_id: str) -> bool:
    """Whether the share is for a named hospital (its page asks for the hospital's token too)."""
    row = share_rows.by_lookup(db, lookup_of(share_id)) if len(share_id) <= 64 else None
    return row is not None and row["audience"] == "hospital"


def actor_of(row: dict[str, Any]) -> str:
    """Who opens a share, as the audit trail names them: the link's holder, or the receiving hospital."""
    return HOLDER if row["audience"] == "anyone" else f"hospital:{row['recipient']}"[:64]


def entry(row: dict[str, Any], action: str, actor: str, client: str | None, **detail: Any) -> dict[str, Any]:
    """An audit entry about the share: its number and receiving party, never the link, key or passcode."""
    return {"action": action, "actor": actor, "study_uid": row["study_uid"], "client": client,
            "detail": {"share": row["id"], "audience": row["audience"], "recipient": row["recipient"], **detail}}


def _refuse_try(db: Database, row: dict[str, Any], refusal: Refusal, actor: str, client: str | None,
                now: datetime, via: str) -> ShareRefused:
    tries = share_rows.failed_try(db, row["id"], MAX_TRIES, now, entry(
        row, "share_passcode_failed" if refusal is Refusal.WRONG_PASSCODE else "share_token_failed", actor,
        client, via=via))
    return ShareRefused(Refusal.LOCKED if tries >= MAX_TRIES else refusal, MAX_TRIES - tries)


def _sealed(root: Path, row: dict[str, Any], key_text: str) -> Sealed:
    try:
        sealed = Sealed(root / row["folder"], key_from_text(key_text))
        sealed.manifest()  # the key opens it, or this is not the share's link
    except (WrongKey, FileNotFoundError):
        raise ShareRefused(Refusal.BAD_LINK) from None
    return sealed


def open_in_browser(db: Database, root: Path, share_id: str, key_text: str, passcode: str,
                    hospital_token: str | None, client: str | None, now: datetime) -> Opened:
    """Check the passcode (and hospital token) and the key, count one open and start a session."""
    row = find(db, share_id, now, counting=True)
    actor = actor_of(row)
    if not passcode_ok(row["passcode_hash"], passcode):
        raise _refuse_try(db, row, Refusal.WRONG_PASSCODE, actor, client, now, "page")
    if row["audience"] == "hospital" and not digest_ok(row["recipient_digest"], hospital_token or ""):
        raise _refuse_try(db, row, Refusal.WRONG_HOSPITAL, actor, client, now, "page")
    sealed = _sealed(root, row, key_text)
    session = new_token("rs_")
    until = min(now + timedelta(minutes=SESSION_MINUTES), row["expires_at"])
    if not share_rows.take_open(db, row["id"], now, entry(row, "share_opened", actor, client, via="page",
                                                          open=row["opens"] + 1, of=row["max_opens"]),
                                (token_digest(session), until)):
        raise ShareRefused(refusal_of(share_rows.get(db, row["id"]), now, True) or Refusal.USED_UP)
    return Opened(row, sealed, actor, session)


def in_session(db: Database, root: Path, share_id: str, cookie: str | None, now: datetime) -> Opened:
    """The share a browser opened (its cookie: ``<session>.<key>``), still neither revoked, locked nor expired."""
    row = find(db, share_id, now, counting=False)
    session, _, key_text = (cookie or "").partition(".")
    if not session or not share_rows.session_valid(db, row["id"], token_digest(session), now):
        raise ShareRefused(Refusal.NO_SESSION)
    actor = actor_of(row)
    return Opened(row, _sealed(root, row, key_text), actor)


def by_hospital(db: Database, root: Path, share_id: str, bearer: str | None, client: str | None, now: datetime,
                counting: bool, what: str) -> Opened:
    """A receiving hospital's system (``Bearer <hospital token>.<key>``); ``counting``: a retrieve of the study."""
    row = find(db, share_id, now, counting=counting)
    token, _, key_text = (bearer or "").partition(".")
    actor = actor_of(row)
    if row["audience"] != "hospital":
        raise ShareRefused(Refusal.WRONG_HOSPITAL)
    if not digest_ok(row["recipient_digest"], token):
        raise _refuse_try(db, row, Refusal.WRONG_HOSPITAL, actor, client, now, "dicomweb")
    opened = Opened(row, _sealed(root, row, key_text), actor)
    if counting and not share_rows.take_open(db, row["id"], now, entry(row, "share_retrieved", actor, client,
                                                                        via="dicomweb", what=what,
                                                                        open=row["opens"] + 1, of=row["max_opens"])):
        raise ShareRefused(refusal_of(share_rows.get(db, row["id"]), now, True) or Refusal.USED_UP)
    return opened
