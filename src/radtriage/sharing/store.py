"""The sealed folder of a share under ``data/shares/<folder>``: ``manifest`` (JSON: the study, its series and
instances, the signed report) and one file per instance, each sealed with the link's key (`crypto.seal`).

Written whole or not at all: into ``<folder>.partial``, fsynced, then renamed. Read only with the key, one file
at a time, while a holder of the link is served.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from radtriage.db import shares as share_rows
from radtriage.db.engine import Database
from radtriage.sharing.crypto import seal, unseal

MANIFEST = "manifest"


def shares_root(data_dir: Path) -> Path:
    return (data_dir / "shares").resolve()


def _write(path: Path, data: bytes) -> None:
    with path.open("wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def write_sealed(root: Path, folder: str, key: bytes, manifest: dict[str, Any],
                 instances: Iterable[tuple[str, bytes]]) -> int:
    """Seal ``instances`` (name, Part 10 bytes) and ``manifest`` into ``root/folder``; the bytes written."""
    root.mkdir(parents=True, exist_ok=True)
    partial = root / f"{folder}.partial"
    partial.mkdir()
    size = 0
    try:
        for name, data in instances:
            sealed = seal(key, name, data)
            _write(partial / name, sealed)
            size += len(sealed)
        sealed = seal(key, MANIFEST, json.dumps(manifest, ensure_ascii=False).encode())
        _write(partial / MANIFEST, sealed)
        partial.rename(root / folder)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return size + len(sealed)


def remove_sealed(root: Path, folder: str) -> None:
    """Delete a share's sealed files (revoked or expired); copies already downloaded are not recalled."""
    shutil.rmtree(root / folder, ignore_errors=True)


def purge_ended(db: Database, root: Path, now: datetime) -> int:
    """Delete the sealed copies of shares that can no longer be opened (done whenever a share is issued); how
    many were still there."""
    gone = 0
    for folder in share_rows.ended_folders(db, now):
        if (root / folder).exists():
            remove_sealed(root, folder)
            gone += 1
    return gone


@dataclass(frozen=True)
class Sealed:
    """An opened share's folder and the key from its link."""

    folder: Path
    key: bytes

    def read(self, name: str) -> bytes:
        if "/" in name or name.startswith("."):
            raise FileNotFoundError(name)
        return unseal(self.key, name, (self.folder / name).read_bytes())

    def manifest(self) -> dict[str, Any]:
        return json.loads(self.read(MANIFEST))
