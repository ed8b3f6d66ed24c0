"""Passwords, tokens and signatures: the few primitives accounts and alerts need.

Passwords are hashed with Argon2id (argon2-cffi, its current default
parameters). Tokens are 256-bit random URL-safe strings; only their SHA-256
is stored, so a copy of the database does not hand out working tokens.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

_hasher = PasswordHasher()

MIN_PASSWORD_LENGTH = 12


class WeakPassword(ValueError):
    """A password too short to be accepted."""


def hash_password(password: str) -> str:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise WeakPassword(f"a password needs at least {MIN_PASSWORD_LENGTH} characters")
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


def kept_secret(path: Path) -> str:
    """A random secret kept in ``path`` (made once, mode 0600, never overwritten); its text."""
    if not path.exists():
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process made it first
            pass
        else:
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_urlsafe(48))
    return path.read_text().strip()
