"""The rule language of ``select`` and ``prefer`` (and of priority rules on task results), as data.

A rule tests one value by one operator (`OPERATORS`); a `Select` holds the
rules a series must pass and its slice bounds; a ``prefer`` list ranks the
series that pass (`Preference`: a test, or a `SortKey`). Pipelines, the dose
protocol mapping and the recognition list all write their rules in it; the
evaluator is `radtriage.rules.evaluate`. The schema is strict (unknown keys,
wrong types and bad regular expressions are errors); the evaluation is the
forgiving side.
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    PrivateAttr,
    StrictBool,
    StrictInt,
    StrictStr,
    Tag,
    field_validator,
    model_validator,
)
from pydicom.datadict import keyword_dict

EXTRA_KEYWORDS = frozenset({"LocalizerCount"})
"""Header keys that are not DICOM keywords but ride in a series' header (added by assembly)."""

SLICES = "slices"
"""The pseudo-key of `SortKey.by` for the number of slices (instances x frames)."""

Number = Annotated[float, Field(strict=True, allow_inf_nan=False)]  # an int or a float, never text or a bool
Scalar = StrictStr | StrictBool | StrictInt | Number


class StrictModel(BaseModel):
    """A frozen model that refuses unknown keys (every configuration document is one)."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Range(StrictModel):
    """Numeric bounds: ``min``/``max`` inclusive, ``gt``/``lt`` exclusive; ``absolute`` tests ``|value|``."""

    min: Number | None = None
    max: Number | None = None
    gt: Number | None = None
    lt: Number | None = None
    absolute: StrictBool = False

    @model_validator(mode="after")
    def _bounds(self) -> Range:
        bounds = [b for b in (self.min, self.max, self.gt, self.lt) if b is not None]
        if not bounds:
            raise ValueError("a range needs at least one of min, max, gt, lt")
        low = max((b for b in (self.min, self.gt) if b is not None), default=-math.inf)
        high = min((b for b in (self.max, self.lt) if b is not None), default=math.inf)
        if low > high:
            raise ValueError(f"empty range: lower bound {low} is above upper bound {high}")
        return self

    def holds(self, x: float) -> bool:
        if self.absolute:
            x = abs(x)
        return ((self.min is None or x >= self.min) and (self.max is None or x <= self.max)
                and (self.gt is None or x > self.gt) and (self.lt is None or x < self.lt))

    def describe(self) -> str:
        parts = [f"{op} {b:g}" for op, b in ((">=", self.min), ("<=", self.max), (">", self.gt), ("<", self.lt))
                 if b is not None]
        return ("|x| " if self.absolute else "") + " and ".join(parts)


OPERATORS = ("equals", "not_equals", "in", "not_in", "regex", "not_regex", "range", "present")
NEGATIVE_OPERATORS = frozenset({"not_equals", "not_in", "not_regex"})


class ValueTest(StrictModel):
    """One test of one value: exactly one operator.

    String comparisons ignore case and surrounding blanks (DICOM practice
    varies); a regular expression is searched (not anchored) ignoring case.
    A multi-valued value (a list, or a string with ``\\`` separators) passes
    a positive operator when any of its values does, and a negative one
    when none does. ``if_missing`` decides a missing value: by default a
    negative operator passes and every other fails (``present`` says
    itself).
    """

    equals: Scalar | None = None
    not_equals: Scalar | None = None
    in_: list[Scalar] | None = Field(default=None, alias="in", min_length=1)
    not_in: list[Scalar] | None = Field(default=None, min_length=1)
    regex: str | None = None
    not_regex: str | None = None
    range: Range | None = None
    present: StrictBool | None = None
    if_missing: Literal["match", "fail"] | None = None

    _pattern: re.Pattern[str] | None = PrivateAttr(default=None)

    @field_validator("regex", "not_regex")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"bad regular expression {value!r}: {exc}") from None
        return value

    @model_validator(mode="after")
    def _one_operator(self) -> ValueTest:
        given = self.operators_given()
        if len(given) != 1:
            raise ValueError(f"give exactly one operator of {', '.join(OPERATORS)}; got "
                             f"{', '.join(given) if given else 'none'}")
        if self.present is not None and self.if_missing is not None:
            raise ValueError("if_missing means nothing with present")
        pattern = self.regex if self.regex is not None else self.not_regex
        if pattern is not None:
            self._pattern = re.compile(pattern, re.IGNORECASE)
        return self

    def operators_given(self) -> list[str]:
        values = {"equals": self.equals, "not_equals": self.not_equals, "in": self.in_, "not_in": self.not_in,
                  "regex": self.regex, "not_regex": self.not_regex, "range": self.range, "present": self.present}
        return [name for name, v in values.items() if v is not None]

    @property
    def operator(self) -> str:
        return self.operators_given()[0]

    @property
    def operand(self) -> Any:
        return {"in": self.in_}.get(self.operator, getattr(self, self.operator, None))

    @property
    def pattern(self) -> re.Pattern[str] | None:
        return self._pattern


def known_keyword(value: str) -> str:
    if value not in keyword_dict and value not in EXTRA_KEYWORDS:
        raise ValueError(f"{value!r} is not a DICOM keyword (nor one of {', '.join(sorted(EXTRA_KEYWORDS))})")
    return value


class HeaderTest(ValueTest):
    """A test of one header keyword, e.g. ``{keyword: Modality, equals: CT}``."""

    keyword: StrictStr

    @field_validator("keyword")
    @classmethod
    def _keyword(cls, value: str) -> str:
        return known_keyword(value)


class AnyOf(StrictModel):
    """Passes when at least one of its tests passes: ``{any: [test, ...]}``."""

    any: list[HeaderTest] = Field(min_length=1)


class ResultTest(ValueTest):
    """A test of one task-result field (dotted for nested: ``lung_rads.category``)."""

    field: Annotated[StrictStr, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")]


def _tag(*pairs: tuple[str, str]) -> Any:
    """A discriminator: the member named by the first of ``pairs`` (key, member) whose key the input has."""

    def pick(value: Any) -> str:
        if isinstance(value, BaseModel):
            return type(value).__name__
        keys = value if isinstance(value, dict) else {}
        return next((member for key, member in pairs if key in keys), "HeaderTest")

    return Discriminator(pick)


Rule = Annotated[Annotated[HeaderTest, Tag("HeaderTest")] | Annotated[AnyOf, Tag("AnyOf")],
                 _tag(("any", "AnyOf"))]


class Select(StrictModel):
    """Which series a pipeline applies to: every rule must pass, and the slice count be in bounds.

    Slices are the series' instances (localizers excluded) times their
    frames (``NumberOfFrames``, for enhanced multi-frame objects).
    """

    min_slices: StrictInt = Field(default=1, ge=1)
    max_slices: StrictInt | None = Field(default=None, ge=1)
    rules: list[Rule] = Field(min_length=1)

    @model_validator(mode="after")
    def _slices(self) -> Select:
        if self.max_slices is not None and self.max_slices < self.min_slices:
            raise ValueError(f"max_slices {self.max_slices} is below min_slices {self.min_slices}")
        return self


class SortKey(StrictModel):
    """Rank by a number: ``{by: SliceThickness, order: ascending}``; ``by: slices`` counts slices.
    A series without a usable value ranks after those with one."""

    by: StrictStr
    order: Literal["ascending", "descending"]

    @field_validator("by")
    @classmethod
    def _by(cls, value: str) -> str:
        if value == SLICES:
            return value
        try:
            return known_keyword(value)
        except ValueError:
            raise ValueError(f"{value!r} is neither a DICOM keyword nor {SLICES!r}") from None


Preference = Annotated[Annotated[HeaderTest, Tag("HeaderTest")] | Annotated[SortKey, Tag("SortKey")],
                       _tag(("by", "SortKey"), ("order", "SortKey"))]
"""One ``prefer`` criterion: a series passing a test ranks before one failing it; a sort key ranks by a number."""
