"""The share's secrets: the link's id and key, AES-256-GCM for what the share holds, the passcode's hash.

The link carries an id (128 random bits) and a key (256 random bits). The server stores the SHA-256 of the id
(to find the share) and never the key: every file of the shared copy is sealed with the key (AES-256-GCM, a
fresh 96-bit nonce per file, the file's name as associated data so files cannot be swapped), so a copy of the
data directory and the database together cannot read a share back without its link.
"""

from __future__ import annotations

import base64
import os
import secrets

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from radtriage.security import hash_password, same, token_digest, verify_password

KEY_BYTES = 32
ID_BYTES = 16
NONCE_BYTES = 12
MAGIC = b"RTSHARE1"  # file format: MAGIC, nonce, ciphertext + tag
MIN_PASSCODE = 6


class WrongKey(ValueError):
    """The key does not open this file (another share's key, a damaged link, or a changed file)."""


def new_id() -> str:
    return secrets.token_urlsafe(ID_BYTES)


def new_key() -> bytes:
    return AESGCM.generate_key(bit_length=KEY_BYTES * 8)


def key_text(key: bytes) -> str:
    """The key as it appears in the link (base64url, no padding: 43 characters)."""
    return base64.urlsafe_b64encode(key).rstrip(b"=").decode()


def key_from_text(text: str) -> bytes:
    """The key from its link form; `WrongKey` for anything that is not 32 bytes of base64url."""
    try:
        key = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (ValueError, TypeError):
        raise WrongKey("the link's key is malformed") from None
    if len(key) != KEY_BYTES:
        raise WrongKey("the link's key is malformed")
    return key


def lookup_of(share_id: str) -> str:
    """What the database holds of a link's id."""
    return token_digest(share_id)


def seal(key: bytes, name: str, plaintext: bytes) -> bytes:
    nonce = os.urandom(NONCE_BYTES)
    return MAGIC + nonce + AESGCM(key).encrypt(nonce, plaintext, name.encode())


def unseal(key: bytes, name: str, sealed: bytes) -> bytes:
    if not sealed.startswith(MAGIC):
        raise WrongKey(f"{name} is not a sealed share file")
    nonce = sealed[len(MAGIC):len(MAGIC) + NONCE_BYTES]
    try:
        return AESGCM(key).decrypt(nonce, sealed[len(MAGIC) + NONCE_BYTES:], name.encode())
    except InvalidTag:
        raise WrongKey(f"the key does not open {name}") from None


def new_passcode() -> str:
    """Eight digits, easy to read out or write on a discharge summary beside the QR code."""
    return f"{secrets.randbelow(10 ** 8):08d}"


def hash_passcode(passcode: str) -> str:
    """Argon2id of the passcode (at least `MIN_PASSCODE` characters: few tries are allowed before the share locks)."""
    return hash_password(passcode, min_length=MIN_PASSCODE)


def passcode_ok(stored: str, passcode: str) -> bool:
    return verify_password(stored, passcode)


def digest_ok(stored: str | None, token: str) -> bool:
    """Whether ``token`` is the one whose SHA-256 is ``stored`` (a receiving hospital's token)."""
    return stored is not None and same(stored, token_digest(token))
