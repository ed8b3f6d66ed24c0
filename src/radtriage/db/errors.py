"""Why an action on rows was refused, in the database's own words (the API maps them to HTTP answers)."""

from __future__ import annotations

import enum
from typing import Any


class Refusal(str, enum.Enum):
    MISSING = "missing"  # no such row
    CONFLICT = "conflict"  # the row's state does not allow it now
    NOT_YOURS = "not_yours"  # another person holds it


class ActionRefused(Exception):
    """An action that cannot be done: ``refusal`` says why, ``extra`` adds facts for the caller."""

    def __init__(self, refusal: Refusal, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.refusal, self.extra = refusal, extra
