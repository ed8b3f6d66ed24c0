"""Evaluating rules (`radtriage.rules.schema`) on a series header or a task result.

The header is a series' routing header: DICOM keywords to JSON-able values
(strings, numbers, lists for multi-valued elements such as ImageType), plus
``LocalizerCount`` from assembly. Evaluation forgives what scanners do:
missing keys, numbers written as strings ("5.0"), multi-valued strings with
``\\`` separators, stray blanks and NULs, any letter case, PatientAge as a
DICOM Age String ("067Y", "018M", "010W", "003D").
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

from radtriage.rules.schema import NEGATIVE_OPERATORS, SLICES, HeaderTest, Preference, Select, SortKey, ValueTest

_AGE = re.compile(r"^\s*(\d{1,3})\s*([DWMY])?\s*$", re.IGNORECASE)
_DAYS_PER_YEAR = 365.25
_AGE_UNIT_YEARS = {"D": 1 / _DAYS_PER_YEAR, "W": 7 / _DAYS_PER_YEAR, "M": 1 / 12, "Y": 1.0}

# --------------------------------------------------------------------------- values


def parse_age(value: Any) -> float | None:
    """A DICOM Age String (``nnnD|W|M|Y``, PS3.5 6.2) in years; a bare number is years. None if unusable."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value) if math.isfinite(value) and value >= 0 else None
    if not isinstance(value, str):
        return None
    m = _AGE.match(value.strip("\x00 "))
    if not m:
        return None
    return int(m.group(1)) * _AGE_UNIT_YEARS[(m.group(2) or "Y").upper()]


def values_of(container: Mapping[str, Any], key: str) -> list[Any]:
    """The values of ``key``: [] when missing or empty; multi-valued strings split on ``\\``."""
    return _flatten(_lookup(container, key))


def _lookup(container: Any, key: str) -> Any:
    for part in key.split("."):
        if isinstance(container, Mapping):
            container = container.get(part)
        else:
            container = getattr(container, part, None)
        if container is None:
            return None
    return container


def _flatten(value: Any) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return [v for item in value for v in _flatten(item)]
    if isinstance(value, bytes):
        value = value.decode("latin-1", "replace")
    if isinstance(value, str):
        parts = [p.strip("\x00 \t\r\n") for p in value.split("\\")]
        return [p for p in parts if p]
    if isinstance(value, float) and math.isnan(value):
        return []
    return [value]


def _number(value: Any, key: str) -> float | None:
    if key == "PatientAge":
        return parse_age(value)
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        x = float(value)
    elif isinstance(value, str):
        try:
            x = float(value.strip())
        except ValueError:
            return None
    else:
        return None
    return x if math.isfinite(x) else None


def _equal(value: Any, expected: Any, key: str) -> bool:
    if isinstance(expected, bool):
        if isinstance(value, bool):
            return value is expected
        return isinstance(value, str) and value.strip().casefold() == str(expected).casefold()
    if isinstance(expected, (int, float)):
        x = _number(value, key)
        return x is not None and math.isclose(x, float(expected), rel_tol=1e-9, abs_tol=1e-9)
    if isinstance(value, bool):
        return str(value).casefold() == expected.strip().casefold()
    if isinstance(value, (int, float)):
        x = _number(expected, key)
        return x is not None and math.isclose(float(value), x, rel_tol=1e-9, abs_tol=1e-9)
    return str(value).strip().casefold() == expected.strip().casefold()


def _show(values: list[Any]) -> str:
    if not values:
        return "missing"
    return repr(values[0]) if len(values) == 1 else repr(values)


# --------------------------------------------------------------------------- one test


def failure(test: ValueTest, container: Mapping[str, Any] | Any, key: str) -> str | None:
    """Why ``test`` fails on ``container[key]``, or None when it passes."""
    values = values_of(container, key)
    op, operand = test.operator, test.operand
    if op == "present":
        if bool(values) == operand:
            return None
        return f"{key} is {'missing' if operand else f'present ({_show(values)})'}"
    if not values:
        default = "match" if op in NEGATIVE_OPERATORS else "fail"
        if (test.if_missing or default) == "match":
            return None
        return f"{key} is missing"
    if op == "equals":
        ok = any(_equal(v, operand, key) for v in values)
        return None if ok else f"{key} is {_show(values)}, not {operand!r}"
    if op == "not_equals":
        ok = not any(_equal(v, operand, key) for v in values)
        return None if ok else f"{key} is {_show(values)}"
    if op == "in":
        ok = any(_equal(v, e, key) for v in values for e in operand)
        return None if ok else f"{key} is {_show(values)}, none of {operand!r}"
    if op == "not_in":
        hit = [v for v in values if any(_equal(v, e, key) for e in operand)]
        return None if not hit else f"{key} has {_show(hit)}"
    if op in ("regex", "not_regex"):
        pattern = test.pattern
        assert pattern is not None
        hit = [v for v in values if pattern.search(str(v))]
        if op == "regex":
            return None if hit else f"{key} {_show(values)} does not match /{pattern.pattern}/"
        return None if not hit else f"{key} {_show(hit)} matches /{pattern.pattern}/"
    if op == "range":
        numbers = [x for x in (_number(v, key) for v in values) if x is not None]
        if not numbers:
            default = test.if_missing or "fail"
            return None if default == "match" else f"{key} {_show(values)} is not a number"
        ok = any(operand.holds(x) for x in numbers)
        return None if ok else f"{key} {_show(values)} is not {operand.describe()}"
    raise AssertionError(f"operator {op!r} not handled")  # pragma: no cover - the schema allows no other


def slices(header: Mapping[str, Any], n_instances: int) -> int:
    """Slices in a series: instances times frames per instance (enhanced multi-frame)."""
    frames = [x for x in (_number(v, "NumberOfFrames") for v in values_of(header, "NumberOfFrames")) if x]
    return int(n_instances) * max(1, int(frames[0]) if frames else 1)


NONE_OF = "none of: "
"""How `select_failures` starts the reason of an ``any`` group none of whose tests passed."""


def select_failures(select: Select, header: Mapping[str, Any], n_instances: int) -> list[str]:
    """Every reason a series fails ``select`` (slice bounds, then each rule in order); [] when it passes."""
    reasons = []
    n = slices(header, n_instances)
    if n < select.min_slices:
        reasons.append(f"{n} slices, fewer than {select.min_slices}")
    if select.max_slices is not None and n > select.max_slices:
        reasons.append(f"{n} slices, more than {select.max_slices}")
    for rule in select.rules:
        if isinstance(rule, HeaderTest):
            reason = failure(rule, header, rule.keyword)
            if reason:
                reasons.append(reason)
        else:
            each = [failure(t, header, t.keyword) for t in rule.any]
            if all(each):
                reasons.append(NONE_OF + "; ".join(r for r in each if r))
    return reasons


def rank_key(prefer: Sequence[Preference], header: Mapping[str, Any], n_instances: int) -> tuple[tuple[int, float], ...]:
    """A sort key by ``prefer``, criterion by criterion: a passing test or a smaller key ranks first."""
    key: list[tuple[int, float]] = []
    for criterion in prefer:
        if isinstance(criterion, SortKey):
            if criterion.by == SLICES:
                x: float | None = float(slices(header, n_instances))
            else:
                numbers = [_number(v, criterion.by) for v in values_of(header, criterion.by)]
                x = next((v for v in numbers if v is not None), None)
            if x is None:
                key.append((1, 0.0))
            else:
                key.append((0, x if criterion.order == "ascending" else -x))
        else:
            key.append((0 if failure(criterion, header, criterion.keyword) is None else 1, 0.0))
    return tuple(key)
