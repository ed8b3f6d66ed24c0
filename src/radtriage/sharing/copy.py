"""Each instance of a shared copy says in its header that it is a shared copy (docs/sharing.md, "The copy").

The UIDs are kept (Study, Series and SOP Instance): the pixels and every clinical attribute are unchanged, so
the receiving PACS files the copy with any other copy of the same study and a report or KOS that references an
instance still finds it. What changes is recorded in the standard way:

- Image Comments (0020,4000), General Image module, Type 3, shown by most viewers and PACS: "SHARED COPY" first,
  with the date and the issuing system, any original comment kept after it;
- Original Attributes Sequence (0400,0561), SOP Common module: one item saying which attribute was changed
  (Modified Attributes Sequence with its previous value, empty where it had none), when, by which system, and
  why (Reason for the Attribute Modification "COERCE": values changed by a system outside the acquisition).

Instances without pixels (SR, KOS) carry only the Original Attributes Sequence item; their Content is untouched.
"""

from __future__ import annotations

import io
from datetime import datetime
from pathlib import Path

import pydicom
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

MARK = "SHARED COPY"
MAX_COMMENT = 10240  # LT


def mark_shared_copy(ds: Dataset, issued_at: datetime, system: str) -> Dataset:
    """``ds`` (changed in place) marked as a shared copy issued at ``issued_at`` by ``system`` (an AE title)."""
    previous = Dataset()
    had_pixels = "PixelData" in ds
    if had_pixels:
        original = str(ds.get("ImageComments", "") or "")
        previous.ImageComments = original or None
        note = f"{MARK} - patient-carried share issued {issued_at:%Y-%m-%d} by {system}; not the original"
        ds.ImageComments = (note + (f". {original}" if original else ""))[:MAX_COMMENT]
    item = Dataset()
    item.ModifiedAttributesSequence = Sequence([previous] if had_pixels else [])
    item.AttributeModificationDateTime = issued_at.strftime("%Y%m%d%H%M%S")
    item.ModifyingSystem = system[:64]
    item.SourceOfPreviousValues = ""
    item.ReasonForTheAttributeModification = "COERCE"
    ds.OriginalAttributesSequence = Sequence([*ds.get("OriginalAttributesSequence", []), item])
    return ds


def shared_copy_bytes(path: Path, issued_at: datetime, system: str) -> tuple[Dataset, bytes]:
    """The stored instance at ``path`` marked as a shared copy: its header (no pixels kept) and Part 10 bytes."""
    ds = pydicom.dcmread(path)
    mark_shared_copy(ds, issued_at, system)
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    if "PixelData" in ds:
        del ds.PixelData
    return ds, buf.getvalue()

