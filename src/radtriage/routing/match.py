"""Matching series headers against pipeline specs, and picking a study's best series.

The header is `TriageCase.header`: DICOM keywords to JSON-able values
(strings, numbers, lists for multi-valued elements such as ImageType), plus
``LocalizerCount`` from assembly. Matching forgives what scanners do:
missing keys, numbers written as strings ("5.0"), multi-valued strings with
``\\`` separators, stray blanks and NULs, any letter case, PatientAge as a
DICOM Age String ("067Y", "018M", "010W", "003D").
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from radtriage.domain import CaseStatus, Priority, TriageCase
from radtriage.routing.spec import NEGATIVE_OPERATORS, SLICES, HeaderTest, PipelineSpec, SortKey, _Test

_AGE = re.compile(r"^\s*(\d{1,3})\s*([DWMY])?\s*$", re.IGNORECASE)
_DAYS_PER_YEAR = 365.25
_AGE_UNIT_YEARS = {"D": 1 / _DAYS_PER_YEAR, "W": 7 / _DAYS_PER_YEAR, "M": 1 / 12, "Y": 1.0}

Candidate = tuple[str, Mapping[str, Any], int]
"""(series UID, header, number of instances) of one series of a study."""


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


def failure(test: _Test, container: Mapping[str, Any] | Any, key: str) -> str | None:
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


# --------------------------------------------------------------------------- a pipeline


_NONE_OF = "none of: "


def why_not(spec: PipelineSpec, header: Mapping[str, Any], n_instances: int) -> list[str]:
    """Every reason ``spec`` does not apply to the series; [] when it does."""
    reasons = [] if spec.enabled else ["pipeline disabled"]
    sel = spec.select
    n = slices(header, n_instances)
    if n < sel.min_slices:
        reasons.append(f"{n} slices, fewer than {sel.min_slices}")
    if sel.max_slices is not None and n > sel.max_slices:
        reasons.append(f"{n} slices, more than {sel.max_slices}")
    for rule in sel.rules:
        if isinstance(rule, HeaderTest):
            reason = failure(rule, header, rule.keyword)
            if reason:
                reasons.append(reason)
        else:
            each = [failure(t, header, t.keyword) for t in rule.any]
            if all(each):
                reasons.append(_NONE_OF + "; ".join(r for r in each if r))
    return reasons


def near_misses(specs: Iterable[PipelineSpec], header: Mapping[str, Any], n_instances: int) -> list[str]:
    """For a series no pipeline applies to: each enabled pipeline it misses by one reason only, with that reason
    (e.g. ``stroke_ich: LossyImageCompressionRatio '338.7' is not <= 10``), so a site can see why."""
    out = []
    for spec in specs:
        reasons = why_not(spec, header, n_instances)
        # a miss on an ``any`` group (what the series shows: head, chest...) is another kind of study, not a near miss
        if spec.enabled and len(reasons) == 1 and not reasons[0].startswith(_NONE_OF):
            out.append(f"{spec.id}: {reasons[0]}")
    return out


def matches(spec: PipelineSpec, header: Mapping[str, Any], n_instances: int) -> bool:
    """Whether ``spec`` applies to the series (`why_not` says why not)."""
    return not why_not(spec, header, n_instances)


def route(specs: Iterable[PipelineSpec], header: Mapping[str, Any], n_instances: int) -> list[str]:
    """The ids of the pipelines that apply to the series, in the order of ``specs``; [] is "no AI applicable"."""
    return [s.id for s in specs if matches(s, header, n_instances)]


def route_case(specs: Sequence[PipelineSpec], case: TriageCase) -> TriageCase:
    """The case with ``tasks`` filled; a case no pipeline applies to is marked `CaseStatus.NO_AI`."""
    tasks = tuple(route(specs, case.header, case.instance_count))
    update: dict[str, Any] = {"tasks": tasks}
    if not tasks:
        update["status"] = CaseStatus.NO_AI
    return case.model_copy(update=update)


# --------------------------------------------------------------------------- best series


def _rank(spec: PipelineSpec, header: Mapping[str, Any], n_instances: int) -> tuple[tuple[int, float], ...]:
    key: list[tuple[int, float]] = []
    for criterion in spec.prefer:
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


def rank_series(spec: PipelineSpec, candidates: Iterable[Candidate]) -> list[str]:
    """The series UIDs ``spec`` applies to, best first (``prefer`` in order; ties keep the given order)."""
    ok = [(uid, header, n) for uid, header, n in candidates if matches(spec, header, n)]
    ranked = sorted(range(len(ok)), key=lambda i: (_rank(spec, ok[i][1], ok[i][2]), i))
    return [ok[i][0] for i in ranked]


def best_series(spec: PipelineSpec, candidates: Iterable[Candidate]) -> str | None:
    """The UID of the series of a study that ``spec`` should read, or None when none applies."""
    ranked = rank_series(spec, candidates)
    return ranked[0] if ranked else None


# --------------------------------------------------------------------------- priority


def priority_for(spec: PipelineSpec, result: Mapping[str, Any] | Any) -> tuple[Priority, str | None]:
    """The worklist priority of one task result by the spec's ``priority`` rules, and the reason.

    ``result`` is the task's result (a mapping, or an object with attributes;
    dotted fields reach into nested mappings). The first rule all of whose
    tests hold wins; else the default, with no reason.
    """
    for rule in spec.priority.rules:
        if all(failure(t, result, t.field) is None for t in rule.when):
            return rule.priority, rule.reason
    return spec.priority.default, None

