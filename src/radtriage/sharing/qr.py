"""The share's link as a QR code (segno) for a discharge summary: PNG for printing, SVG for documents.

Error correction level M (15 %: a creased or slightly smudged printout still scans); a quiet zone of four
modules as ISO/IEC 18004 asks. The link is 90-110 characters: a version 6 symbol, 41 modules square; the
PNG at 8 pixels a module is 392 pixels square with the quiet zone.
"""

from __future__ import annotations

import io

import segno

FORMATS = {"png": "image/png", "svg": "image/svg+xml"}


def qr_code(link: str, kind: str, scale: int = 8) -> bytes:
    """``link`` as a QR code image of ``kind`` (png or svg)."""
    if kind not in FORMATS:
        raise ValueError(f"QR code formats: {', '.join(FORMATS)}")
    code = segno.make(link, error="m", micro=False)
    buf = io.BytesIO()
    code.save(buf, kind=kind, scale=scale, border=4)
    return buf.getvalue()
