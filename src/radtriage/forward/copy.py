"""The forwarded copy of a stored instance: its stored bytes, with this site's Issuer of Patient ID added where
the scanner left it empty.

The edge's own copy stays the bytes as received (the spool's rule: its hash is what a resend from the
scanner is compared with); only the copy that leaves carries the issuer, so the hub, which holds many
sites' patients, compares issuer-qualified Patient IDs. The edit is deterministic (the same stored bytes
give the same forwarded bytes), so a resend of a row is the same instance at the hub, stored once. The
sender says in the log where it added the issuer (UIDs only, never the Patient ID).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import pydicom
from pydicom.dataset import Dataset


@dataclass(frozen=True)
class Copy:
    """What leaves: the stored file as it is (``dataset`` None), or the edited data set and its Part 10 bytes."""

    path: Path
    dataset: Dataset | None = None
    edited: bytes | None = None

    @property
    def issuer_added(self) -> bool:
        return self.dataset is not None

    def part10(self) -> bytes:
        """The Part 10 bytes that leave (STOW-RS)."""
        return self.edited if self.edited is not None else self.path.read_bytes()


def needs_issuer(path: Path) -> bool:
    """Whether the stored instance has a Patient ID but no Issuer of Patient ID (header read only)."""
    ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["PatientID", "IssuerOfPatientID"])
    return not str(ds.get("IssuerOfPatientID", "") or "").strip()


def forwarded_copy(path: Path, issuer: str | None) -> Copy:
    """The copy of the instance at ``path`` that leaves for the hub (``issuer``: the site's, or None)."""
    if issuer is None or not needs_issuer(path):
        return Copy(path)
    ds = pydicom.dcmread(path)
    ds.IssuerOfPatientID = issuer
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return Copy(path, ds, buf.getvalue())
