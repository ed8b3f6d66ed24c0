"""Shared helpers for the public-dataset loaders: tolerant CSV headers and skip counts.

Nothing in a downloaded dataset is trusted: a row that cannot be read is
counted under a reason and left out, and the counts are logged once per
loader call rather than once per row.
"""

from __future__ import annotations

import csv
import logging
import math
import re
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


class DatasetError(ValueError):
    """A dataset folder that cannot be read as the layout it claims to be."""


def norm(name: str) -> str:
    """A column name compared loosely: case, spaces, punctuation and a BOM ignored."""
    return re.sub(r"[^a-z0-9]+", "", name.replace("\ufeff", "").lower())


def read_table(path: Path, columns: Mapping[str, Sequence[str]]) -> Iterator[tuple[int, dict[str, str]]]:
    """Rows of a CSV as ``(line number, {canonical name: text})``.

    ``columns`` maps each canonical name to the header spellings accepted for
    it (compared with `norm`). A missing column is a `DatasetError` naming the
    file, the column and the header found.
    """
    with open(path, newline="", encoding="utf-8-sig", errors="replace") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None:
            raise DatasetError(f"{path}: empty file (expected a header row)")
        where: dict[str, int] = {}
        normed = [norm(h) for h in header]
        for canon, aliases in columns.items():
            for alias in aliases:
                if norm(alias) in normed:
                    where[canon] = normed.index(norm(alias))
                    break
            else:
                raise DatasetError(
                    f"{path}: no column for {canon!r} (accepted: {', '.join(aliases)}); header is {header}")
        for line, row in enumerate(reader, start=2):
            if not row or all(not c.strip() for c in row):
                continue
            yield line, {canon: (row[i].strip() if i < len(row) else "") for canon, i in where.items()}


def header_matches(path: Path, columns: Mapping[str, Sequence[str]]) -> bool:
    """Whether a CSV's header has every column of ``columns`` (unreadable files: False)."""
    try:
        with open(path, newline="", encoding="utf-8-sig", errors="replace") as f:
            header = next(csv.reader(f), None)
    except OSError:
        return False
    if not header:
        return False
    normed = {norm(h) for h in header}
    return all(any(norm(a) in normed for a in aliases) for aliases in columns.values())


def finite(text: str) -> float | None:
    """A finite float from text, or None."""
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


class Skips:
    """Counts of what a loader left out, by reason, logged once."""

    def __init__(self, what: str) -> None:
        self.what = what
        self.counts: Counter[str] = Counter()

    def add(self, reason: str, n: int = 1) -> None:
        if n:
            self.counts[reason] += n

    def __bool__(self) -> bool:
        return bool(self.counts)

    def summary(self) -> str:
        return "; ".join(f"{n} {reason}" for reason, n in sorted(self.counts.items()))

    def log(self, logger: logging.Logger) -> None:
        if self.counts:
            logger.warning("%s: left out %s", self.what, self.summary())


def logged(indexed: tuple[list[T], Skips], logger: logging.Logger) -> list[T]:
    """The items of a layout's ``index(root)``, after logging what it left out."""
    items, skips = indexed
    skips.log(logger)
    return items
