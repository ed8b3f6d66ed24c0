"""The options a generator's `sample` takes, as one typed parameter object per kind.

Each kind declares its options once, as a frozen dataclass extending
`Options` (CT kinds extend `CtOptions`, which adds the matrix); `sample(rng,
**kw)` builds it, so an unknown option raises `TypeError` as a keyword
argument would.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, TypeVar

T = TypeVar("T", bound="Options")


@dataclass(frozen=True, kw_only=True)
class Options:
    """Base of every generator's options."""

    @classmethod
    def of(cls: type[T], options: T | None = None, **kw: Any) -> T:
        """``options`` with ``kw`` replacing its fields, or a new one from ``kw``."""
        return cls(**{**(asdict(options) if options is not None else {}), **kw})


@dataclass(frozen=True, kw_only=True)
class CtOptions(Options):
    """Options every CT generator takes."""

    matrix: int = 512  # output rows and columns, as scanners write; 128-256 for training and tests
