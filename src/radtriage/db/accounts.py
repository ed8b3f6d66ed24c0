"""Users, API tokens and page sessions (the only path to those tables).

Secrets never reach the database in the clear: passwords as Argon2id hashes,
tokens and session cookies as SHA-256 digests (`radtriage.security`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, select, update

from radtriage.db.clock import aware, utcnow
from radtriage.db.changes import changes
from radtriage.db.engine import Database
from radtriage.db.tables import api_tokens, login_attempts, users, web_sessions
from radtriage.security import hash_password, new_token, token_digest

ROLES = ("radiologist", "stroke", "admin", "service", "commissioning", "physicist", "clinician")  # commissioning:
# silent-trial readers; physicist: the dose registry's medical physicists; clinician: issues shares of a study


class AccountError(ValueError):
    """A request about accounts that cannot be done (unknown user, duplicate name, bad role)."""


@dataclass(frozen=True)
class Account:
    id: int
    username: str
    role: str
    display_name: str | None
    disabled: bool
    password_hash: str | None = None


def _account(row: Any) -> Account:
    return Account(row.id, row.username, row.role, row.display_name, row.disabled, row.password_hash)


def count_users(db: Database) -> int:
    with db.read() as conn:
        return conn.execute(select(func.count()).select_from(users)).scalar_one()


def add_user(db: Database, username: str, role: str, password: str | None = None,
             display_name: str | None = None) -> Account:
    if role not in ROLES:
        raise AccountError(f"unknown role {role!r}; roles: {', '.join(ROLES)}")
    if not username or len(username) > 64 or not username.replace(".", "").replace("-", "").replace("_", "").isalnum():
        raise AccountError("a username is 1-64 letters, digits, '.', '-' or '_'")
    if password is None and role != "service":
        raise AccountError("people need a password; only service accounts are token-only")
    hashed = hash_password(password) if password is not None else None
    with db.write() as conn:
        if conn.execute(select(users.c.id).where(users.c.username == username)).first():
            raise AccountError(f"user {username!r} exists")
        uid = conn.execute(users.insert().values(
            username=username, role=role, password_hash=hashed, display_name=display_name,
            disabled=False, created_at=utcnow())).inserted_primary_key[0]
    return Account(uid, username, role, display_name, False, hashed)


def get_user(db: Database, username: str | None = None, user_id: int | None = None) -> Account | None:
    q = select(users)
    q = q.where(users.c.username == username) if username is not None else q.where(users.c.id == user_id)
    with db.read() as conn:
        row = conn.execute(q).first()
    return _account(row) if row else None


def list_users(db: Database) -> list[dict[str, Any]]:
    q = select(users.c.id, users.c.username, users.c.role, users.c.display_name, users.c.disabled,
               users.c.created_at, users.c.last_login_at).order_by(users.c.id)
    with db.read() as conn:
        return [dict(r) for r in conn.execute(q).mappings()]


def set_disabled(db: Database, username: str, disabled: bool = True) -> None:
    """Disable (or enable) a user; disabling also ends their sessions and revokes their tokens."""
    now = utcnow()
    with db.write() as conn:
        row = conn.execute(select(users.c.id).where(users.c.username == username)).first()
        if row is None:
            raise AccountError(f"no user {username!r}")
        conn.execute(update(users).where(users.c.id == row.id).values(disabled=disabled))
        if disabled:
            conn.execute(delete(web_sessions).where(web_sessions.c.user_id == row.id))
            conn.execute(update(api_tokens).where(api_tokens.c.user_id == row.id, api_tokens.c.revoked_at.is_(None))
                         .values(revoked_at=now))


def set_password(db: Database, username: str, password: str) -> None:
    hashed = hash_password(password)
    with db.write() as conn:
        n = conn.execute(update(users).where(users.c.username == username).values(password_hash=hashed)).rowcount
    if n != 1:
        raise AccountError(f"no user {username!r}")


def touch_login(db: Database, user_id: int) -> None:
    with db.write() as conn:
        conn.execute(update(users).where(users.c.id == user_id).values(last_login_at=utcnow()))


# --- bearer tokens -------------------------------------------------------------------


def issue_token(db: Database, username: str, name: str = "api", days: float | None = None) -> str:
    """A new bearer token for ``username`` (shown once; only its digest is kept)."""
    token = new_token("rt_")
    now = utcnow()
    with db.write() as conn:
        row = conn.execute(select(users.c.id, users.c.disabled).where(users.c.username == username)).first()
        if row is None or row.disabled:
            raise AccountError(f"no active user {username!r}")
        conn.execute(api_tokens.insert().values(
            user_id=row.id, name=name[:64], token_sha256=token_digest(token), created_at=now,
            expires_at=now + timedelta(days=days) if days else None))
    return token


TOKEN_CACHE_S = 2.0  # a token's owner is looked up again after this (another process's disable) ...
TOKEN_STALE_S = 3.0  # ... while other requests with it, meanwhile, use the answer it replaces


def _token_owner(db: Database, digest: str) -> tuple[Account, datetime | None] | None:
    """The active account a token digest belongs to, with the token's expiry; None if revoked or disabled."""
    q = (select(users, api_tokens.c.expires_at, api_tokens.c.revoked_at)
         .join(api_tokens, api_tokens.c.user_id == users.c.id)
         .where(api_tokens.c.token_sha256 == digest))
    with db.read() as conn:
        row = conn.execute(q).first()
    if row is None or row.disabled or row.revoked_at is not None:
        return None
    return _account(row), aware(row.expires_at)


def user_for_token(db: Database, token: str, now: datetime | None = None) -> Account | None:
    """The account of a valid bearer token.

    Answers are kept for `TOKEN_CACHE_S` seconds (`TOKEN_STALE_S` while being
    looked up again), and only until this process next writes the users or
    tokens tables: a disable in this process applies at once, in another
    within `TOKEN_STALE_S`.
    """
    now, digest, seen = now or utcnow(), token_digest(token), changes(db)
    found = seen.memo("token_owner", TOKEN_CACHE_S).get_or_build(
        digest, lambda: seen.version(users.name, api_tokens.name), lambda: _token_owner(db, digest), TOKEN_STALE_S)
    if found is None or (found[1] is not None and found[1] <= now):
        return None
    return found[0]


# --- page sessions ---------------------------------------------------------------------


def open_session(db: Database, user_id: int, hours: float) -> tuple[str, str]:
    """A new session: (cookie value, CSRF token)."""
    cookie, csrf = new_token(), new_token()
    now = utcnow()
    with db.write() as conn:
        conn.execute(delete(web_sessions).where(web_sessions.c.expires_at < now))
        conn.execute(web_sessions.insert().values(
            id=token_digest(cookie), user_id=user_id, csrf_token=csrf, created_at=now,
            expires_at=now + timedelta(hours=hours)))
    return cookie, csrf


def session_user(db: Database, cookie: str, now: datetime | None = None) -> tuple[Account, str] | None:
    """The user and CSRF token of a live session."""
    now = now or utcnow()
    q = (select(users, web_sessions.c.csrf_token, web_sessions.c.expires_at)
         .join(web_sessions, web_sessions.c.user_id == users.c.id)
         .where(web_sessions.c.id == token_digest(cookie)))
    with db.read() as conn:
        row = conn.execute(q).first()
    if row is None or row.disabled or aware(row.expires_at) <= now:
        return None
    return _account(row), row.csrf_token


def close_session(db: Database, cookie: str) -> None:
    with db.write() as conn:
        conn.execute(delete(web_sessions).where(web_sessions.c.id == token_digest(cookie)))


# --- failed logins ---------------------------------------------------------------------
# Kept in the database so that every API worker counts the same failures.


def _attempt_keys(username: str, client: str | None) -> tuple[str, str]:
    return username.strip().lower()[:64], (client or "-")[:64]


def failed_login(db: Database, username: str, client: str | None, window_s: float,
                 now: datetime | None = None) -> None:
    """Count one failed login (and forget those older than ``window_s``)."""
    now = now or utcnow()
    name, address = _attempt_keys(username, client)
    with db.write() as conn:
        conn.execute(delete(login_attempts).where(login_attempts.c.at <= now - timedelta(seconds=window_s)))
        conn.execute(login_attempts.insert().values(at=now, username=name, client=address))


def login_wait(db: Database, username: str, client: str | None, per_user: int, per_address: int,
               window_s: float, now: datetime | None = None) -> tuple[float, str | None]:
    """(seconds until another login may be tried, which limit holds it: "user" or "address"); (0, None): now.

    A user name is held after ``per_user`` failures from any address, a client address after
    ``per_address`` failures over all names, each within ``window_s`` seconds."""
    now = now or utcnow()
    name, address = _attempt_keys(username, client)
    cutoff = now - timedelta(seconds=window_s)
    wait, which = 0.0, None
    with db.read() as conn:
        for kind, column, key, limit in (("user", login_attempts.c.username, name, per_user),
                                         ("address", login_attempts.c.client, address, per_address)):
            recent = conn.execute(select(login_attempts.c.at).where(column == key, login_attempts.c.at > cutoff)
                                  .order_by(login_attempts.c.at.desc()).limit(limit)).scalars().all()
            if len(recent) >= limit:
                held = (aware(recent[-1]) + timedelta(seconds=window_s) - now).total_seconds()
                if held > wait:
                    wait, which = held, kind
    return wait, which


def forget_failed_logins(db: Database, username: str, client: str | None) -> None:
    """After a successful login: that user's own mistakes from that address no longer count."""
    name, address = _attempt_keys(username, client)
    with db.write() as conn:
        conn.execute(delete(login_attempts).where(login_attempts.c.username == name,
                                                  login_attempts.c.client == address))
