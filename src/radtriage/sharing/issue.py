"""Issuing a share: the sealed copy written, the row and its audit entry stored, the link made once."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

from radtriage.db import shares as share_rows
from radtriage.db.engine import Database
from radtriage.security import new_token, token_digest
from radtriage.sharing.build import build_sealed
from radtriage.sharing.crypto import hash_passcode, key_text, lookup_of, new_id, new_passcode
from radtriage.sharing.model import Issued, ShareRequest
from radtriage.sharing.store import purge_ended, remove_sealed


def link_of(base_url: str, share_id: str, key: bytes) -> str:
    """The link: the id in the path, the key after ``#`` (a browser never sends the fragment in a request)."""
    return f"{base_url.rstrip('/')}/s/{share_id}#{key_text(key)}"


def issue_share(db: Database, spool_root: Path, root: Path, study_uid: str, req: ShareRequest, issuer: str,
                role: str, client: str | None, base_url: str, system: str, now: datetime) -> Issued:
    purge_ended(db, root, now)
    share_id = new_id()
    passcode = req.passcode or new_passcode()
    recipient_token = new_token("rh_") if req.audience == "hospital" else None
    expires = now + timedelta(hours=req.expires_in_hours)
    meta = {"scope": req.scope, "issued_at": now.isoformat(), "expires_at": expires.isoformat(),
            "issued_by": issuer, "recipient": req.recipient, "system": system}
    folder, key, count, size = build_sealed(db, spool_root, root, study_uid, req.key_images, meta, now, system)
    values = {"lookup": lookup_of(share_id), "study_uid": study_uid, "folder": folder, "issued_by": issuer,
              "issued_role": role, "consent": req.consent, "legal_basis": req.legal_basis,
              "audience": req.audience, "recipient": req.recipient,
              "recipient_digest": token_digest(recipient_token) if recipient_token else None,
              "scope": req.scope, "instances": count, "size_bytes": size, "passcode_hash": hash_passcode(passcode),
              "max_opens": req.max_opens, "expires_at": expires, "created_at": now}
    entry = {"action": "share_issued", "actor": issuer, "role": role, "study_uid": study_uid, "client": client,
             "detail": {"audience": req.audience, "recipient": req.recipient, "scope": req.scope,
                        "instances": count, "consent": req.consent, "legal_basis": req.legal_basis,
                        "expires_at": expires.isoformat(), "max_opens": req.max_opens}}
    try:
        number = share_rows.add(db, values, entry)
    except BaseException:
        remove_sealed(root, folder)
        raise
    return Issued(number, link_of(base_url, share_id, key), passcode, recipient_token)
