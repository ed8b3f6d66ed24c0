"""Passwords, tokens and signatures: the few primitives accounts and alerts need.

Passwords are hashed with Argon2id (argon2-cffi, its current default
parameters). Tokens are 256-bit random URL-safe strings; only their SHA-256
is stored, so a copy of the database does not hand out working tokens.
"""

from __future__ import annotations

import fcntl
import hashlib
import hmac
import logging
import os
import secrets
from pathlib import Path

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

log = logging.getLogger(__name__)
_hasher = PasswordHasher()

MIN_PASSWORD_LENGTH = 12
MIN_SECRET_LENGTH = 32


class WeakPassword(ValueError):
    """A password too short to be accepted."""


def hash_password(password: str, min_length: int = MIN_PASSWORD_LENGTH) -> str:
    """Argon2id of ``password`` (a share's passcode may be shorter: it locks after a few wrong tries)."""
    if len(password) < min_length:
        raise WeakPassword(f"a password needs at least {min_length} characters")
    return _hasher.hash(password)


def verify_password(stored_hash: str | None, password: str) -> bool:
    """True when ``password`` matches; a missing hash (token-only account) never matches."""
    if not stored_hash:
        _hasher.hash("x" * MIN_PASSWORD_LENGTH)  # same work either way: no timing hint that the user exists
        return False
    try:
        return _hasher.verify(stored_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(stored_hash: str) -> bool:
    return _hasher.check_needs_rehash(stored_hash)


def new_token(prefix: str = "") -> str:
    return prefix + secrets.token_urlsafe(32)


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def new_password() -> str:
    return secrets.token_urlsafe(18)


def sign(key: bytes, message: bytes) -> str:
    """HMAC-SHA256 of ``message`` under ``key``, hex."""
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


def write_private(path: Path, text: str, replace: bool = False) -> bool:
    """Write ``text`` to ``path``, readable by this user only (0600), whole or not at all.

    False when ``path`` exists and ``replace`` is false (it is then left as it is)."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        if replace:
            os.replace(tmp, path)
            return True
        try:
            os.link(tmp, path)  # appears complete or not at all; never over another's
        except FileExistsError:
            return False
        except OSError:  # a filesystem without hard links: create it exclusively and write it in place
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                return False
            with os.fdopen(fd, "w") as f:
                f.write(text)
        return True
    finally:
        tmp.unlink(missing_ok=True)


def kept_secret(path: Path) -> str:
    """A random secret kept in ``path`` (made once, mode 0600); its text.

    An empty or short file (a failed write, a hand edit) is never used as a key: it is replaced by
    a new secret, with a warning, once, whichever of several starting processes gets there first."""
    if not path.exists():
        write_private(path, secrets.token_urlsafe(48))  # another process may have made it first: keep theirs
    text = path.read_text().strip()
    if len(text) >= MIN_SECRET_LENGTH:
        return text
    with path.open("rb") as held:  # one process replaces it; the others wait and read the new one
        fcntl.flock(held, fcntl.LOCK_EX)
        text = path.read_text().strip()
        if len(text) < MIN_SECRET_LENGTH:
            found, text = len(text), secrets.token_urlsafe(48)
            write_private(path, text, replace=True)
            log.warning("%s held no usable secret (%d characters): made a new one; anything signed with "
                        "the old one no longer verifies", path, found)
    return text
