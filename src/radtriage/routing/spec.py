"""The pipeline file schema (``pipelines/*.yaml``) and its loader.

A pipeline file says which series a task applies to (``select``), which of
several matching series of a study is the best input (``prefer``), which
model runs it (``model``: a folder name under ``models/``), the named pre-
and post-processing ops with their parameters, the thresholds, how a task
result maps to a worklist priority (``priority``) and which alert policy it
feeds (``alert``). Op names are checked against a registry passed in; a
file can never name an import path.

The schema is strict about what a file may contain (unknown keys, wrong
types, bad regular expressions and unknown op names are errors) and
`load_pipelines` turns every problem into a `PipelineConfigError` that
names the file, the key and the problem, so a bad file stops start-up with
a message an operator can act on. Matching (`radtriage.routing.match`) is
the forgiving side: header values may be missing, oddly typed or cased.

Example (abridged)::

    id: stroke_ich
    version: "1.0.0"
    task: ich
    model: ich-densenet2d
    select:
      min_slices: 16
      rules:
        - {keyword: Modality, equals: CT}
        - any:
            - {keyword: BodyPartExamined, in: [HEAD, BRAIN]}
            - {keyword: StudyDescription, regex: '\\b(HEAD|BRAIN)\\b'}
        - {keyword: ImageType, not_in: [LOCALIZER, MIP]}
        - {keyword: ContrastBolusAgent, present: false}
    prefer:
      - {keyword: ImageType, in: [ORIGINAL]}
      - {by: SliceThickness, order: ascending}
    priority:
      default: ROUTINE
      rules:
        - {priority: STAT, reason: ICH, when: [{field: positive, equals: true}]}
    alert: stroke
"""

from __future__ import annotations

import math
import re
from collections.abc import Collection, Iterable, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    Discriminator,
    ConfigDict,
    Field,
    PrivateAttr,
    StrictBool,
    StrictInt,
    StrictStr,
    Tag,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydicom.datadict import keyword_dict

from radtriage.domain import Priority

TASKS = ("ich", "lvo", "nodule", "bone_age")
"""The tasks a pipeline can run (one predictor each in `radtriage.inference`)."""
Task = Literal["ich", "lvo", "nodule", "bone_age"]

EXTRA_KEYWORDS = frozenset({"LocalizerCount"})
"""Header keys that are not DICOM keywords but ride in `TriageCase.header` (added by assembly)."""

SLICES = "slices"
"""The pseudo-key of `SortKey.by` for the number of slices (instances x frames)."""

_ID = r"^[a-z][a-z0-9_]*$"
_MODEL_ID = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"  # a folder name: no separators, no leading dot
_NAME = r"^[A-Za-z_][A-Za-z0-9_.-]*$"

Number = Annotated[float, Field(strict=True, allow_inf_nan=False)]  # an int or a float, never text or a bool
Scalar = StrictStr | StrictBool | StrictInt | Number


class PipelineConfigError(ValueError):
    """A pipeline file is not valid. ``file``, ``key`` and ``problem`` say which, where and what."""

    def __init__(self, file: str | Path, key: str, problem: str,
                 more: Iterable[tuple[str, str]] = ()) -> None:
        self.file = str(file)
        self.key = key
        self.problem = problem
        self.errors = [(key, problem), *more]
        lines = [f"{k or '(file)'}: {p}" for k, p in self.errors]
        head = f"{self.file}: " + (lines[0] if len(lines) == 1 else f"{len(lines)} problems:")
        super().__init__("\n  ".join([head, *lines]) if len(lines) > 1 else head)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --------------------------------------------------------------------------- conditions


class Range(_Strict):
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


class _Test(_Strict):
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
    def _one_operator(self) -> _Test:
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


def _known_keyword(value: str) -> str:
    if value not in keyword_dict and value not in EXTRA_KEYWORDS:
        raise ValueError(f"{value!r} is not a DICOM keyword (nor one of {', '.join(sorted(EXTRA_KEYWORDS))})")
    return value


class HeaderTest(_Test):
    """A test of one header keyword, e.g. ``{keyword: Modality, equals: CT}``."""

    keyword: StrictStr

    @field_validator("keyword")
    @classmethod
    def _keyword(cls, value: str) -> str:
        return _known_keyword(value)


class AnyOf(_Strict):
    """Passes when at least one of its tests passes: ``{any: [test, ...]}``."""

    any: list[HeaderTest] = Field(min_length=1)


class ResultTest(_Test):
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


class Select(_Strict):
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


class SortKey(_Strict):
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
            return _known_keyword(value)
        except ValueError:
            raise ValueError(f"{value!r} is neither a DICOM keyword nor {SLICES!r}") from None


Preference = Annotated[Annotated[HeaderTest, Tag("HeaderTest")] | Annotated[SortKey, Tag("SortKey")],
                       _tag(("by", "SortKey"), ("order", "SortKey"))]
"""One ``prefer`` criterion: a series passing a test ranks before one failing it; a sort key ranks by a number."""


# --------------------------------------------------------------------------- ops, priority


def _registry() -> Mapping[str, Any]:
    """The op registry (imported when first needed: it brings the task modules, torch and MONAI)."""
    from radtriage.inference.ops import OPS

    return OPS


class OpSpec(_Strict):
    """A registered pre- or post-processing op and its parameters."""

    op: StrictStr
    params: dict[StrictStr, Any] = Field(default_factory=dict)

    @field_validator("op")
    @classmethod
    def _registered(cls, value: str, info: ValidationInfo) -> str:
        if any(c in value for c in ".:/"):
            raise ValueError(f"an op is a registered name, not an import path: {value!r}")
        ops = (info.context or {}).get("ops")
        known = _registry() if ops is None else ops
        if value not in known:
            raise ValueError(f"unknown op {value!r}; registered: {', '.join(sorted(known)) or '(none)'}")
        return value


def _rankable(value: Priority) -> Priority:
    if value is Priority.PENDING_AI:
        raise ValueError("a priority is one of STAT, URGENT, ROUTINE")
    return value


Rank = Annotated[Priority, AfterValidator(_rankable)]


class PriorityRule(_Strict):
    """``priority`` when every test in ``when`` holds; ``reason`` says why on the worklist."""

    priority: Rank
    when: list[ResultTest] = Field(min_length=1)
    reason: StrictStr | None = None


class PriorityMap(_Strict):
    """First rule that holds wins; else ``default``."""

    default: Rank = Priority.ROUTINE
    rules: list[PriorityRule] = Field(default_factory=list)


# --------------------------------------------------------------------------- the pipeline


class PipelineSpec(_Strict):
    """One task pipeline, as one ``pipelines/*.yaml`` file declares it."""

    id: Annotated[StrictStr, Field(pattern=_ID, max_length=64)]
    version: Annotated[StrictStr, Field(pattern=r"^\d+(\.\d+){0,2}([-+][0-9A-Za-z.-]+)?$")]
    task: Task
    title: StrictStr | None = None
    enabled: StrictBool = True
    select: Select
    prefer: list[Preference] = Field(default_factory=list)
    model: Annotated[StrictStr, Field(pattern=_MODEL_ID, max_length=128)]
    preprocess: list[OpSpec] = Field(default_factory=list)
    postprocess: list[OpSpec] = Field(default_factory=list)
    thresholds: dict[Annotated[StrictStr, Field(pattern=_NAME)], Number] = Field(default_factory=dict)
    priority: PriorityMap = Field(default_factory=PriorityMap)
    alert: Annotated[StrictStr, Field(pattern=_ID)] | None = None

    # a model that is not a folder's name, or an alert policy the service does not know, stops start-up
    @field_validator("model")
    @classmethod
    def _model_known(cls, value: str, info: ValidationInfo) -> str:
        models = (info.context or {}).get("models")
        if models is not None and value not in models:
            raise ValueError(f"no model {value!r} in models/; there: {', '.join(sorted(models)) or '(none)'}")
        return value

    @field_validator("alert")
    @classmethod
    def _alert_known(cls, value: str | None, info: ValidationInfo) -> str | None:
        policies = (info.context or {}).get("alert_policies")
        if value is not None and policies is not None and value not in policies:
            raise ValueError(f"unknown alert policy {value!r}; known: {', '.join(sorted(policies)) or '(none)'}")
        return value


# --------------------------------------------------------------------------- loading


class _UniqueKeyLoader(yaml.SafeLoader):
    """Safe YAML that refuses a key given twice in one mapping (plain YAML keeps the last silently)."""


def _mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"key {key!r} given twice", key_node.start_mark)
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)


_MEMBER_TAGS = frozenset({"HeaderTest", "AnyOf", "SortKey"})


def _loc(loc: tuple[int | str, ...]) -> str:
    """A pydantic error location as a YAML key path: ``select.rules[2].regex``.

    Union members (``HeaderTest``, ``AnyOf``...) and the ``in_`` alias are
    pydantic's inner names, not keys of the file, and are left out.
    """
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in _MEMBER_TAGS or part.startswith(("function-", "nullable[")):
            continue
        else:
            out += ("." if out else "") + part
    return out


def _problem(err: Any) -> str:
    msg = str(err["msg"])
    msg = msg.removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        return "unknown key"
    if err["type"] == "missing":
        return "required key missing"
    if "input" in err and err["type"] not in ("value_error", "assertion_error") and not isinstance(
            err["input"], (dict, list)):
        msg += f" (got {err['input']!r})"
    return msg


def parse_pipeline(data: Any, file: str | Path, *, ops: Collection[str] | None = None,
                   models: Collection[str] | None = None,
                   alert_policies: Collection[str] | None = None) -> PipelineSpec:
    """Validate one pipeline document (already read from YAML) or raise `PipelineConfigError`."""
    if not isinstance(data, dict):
        raise PipelineConfigError(file, "", f"a pipeline file holds a mapping, not {type(data).__name__}")
    context = {"ops": ops, "models": models, "alert_policies": alert_policies}
    try:
        spec = PipelineSpec.model_validate(data, context=context)
    except ValidationError as exc:
        # a union reports each member's complaint; keep one line per key and problem
        seen: dict[tuple[str, str], None] = {}
        for err in exc.errors(include_url=False):
            seen.setdefault((_loc(err["loc"]), _problem(err)), None)
        (key, problem), *more = list(seen)
        raise PipelineConfigError(file, key, problem, more) from None
    problems = op_problems(spec)
    if problems:
        (key, problem), *more = problems
        raise PipelineConfigError(file, key, problem, more)
    return spec


def op_problems(spec: PipelineSpec) -> list[tuple[str, str]]:
    """(key, problem) for each op parameter its model refuses and each op out of place (`Registry.chain_problems`)."""
    registry = _registry()
    out: list[tuple[str, str]] = []
    for stage in ("preprocess", "postprocess"):
        for i, step in enumerate(getattr(spec, stage)):
            op = registry.get(step.op)
            if op is None:
                continue  # named in a list the caller gave, but not registered: chain_problems says so
            try:
                op.params.model_validate(step.params)
            except ValidationError as exc:
                for err in exc.errors(include_url=False):
                    where = _loc(err["loc"])
                    out.append((f"{stage}[{i}].params" + (f".{where}" if where else ""), _problem(err)))
    for stage, i, problem in registry.chain_problems(spec.task, [o.op for o in spec.preprocess],
                                                     [o.op for o in spec.postprocess]):
        out.append((stage if i is None else f"{stage}[{i}].op", problem))
    return out


def load_pipeline(path: str | Path, **known: Collection[str] | None) -> PipelineSpec:
    """Read and validate one pipeline file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise PipelineConfigError(path, "", f"cannot read: {exc}") from None
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise PipelineConfigError(path, "", f"not valid YAML: {problem}{where}") from None
    return parse_pipeline(data, path, **known)


def load_pipelines(folder: str | Path, *, ops: Collection[str] | None = None,
                   models: Collection[str] | None = None,
                   alert_policies: Collection[str] | None = None) -> list[PipelineSpec]:
    """Every ``*.yaml`` / ``*.yml`` in ``folder``, validated, in file-name order.

    ``ops`` are the op names allowed (the op registry's when not given);
    ``models`` the model ids there are folders for and ``alert_policies`` the
    configured policy names: each is checked only when given. A missing
    folder, a bad file or an id used twice raises `PipelineConfigError`.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise PipelineConfigError(folder, "", "pipeline folder not found")
    specs: list[PipelineSpec] = []
    where: dict[str, Path] = {}
    for path in sorted([*folder.glob("*.yaml"), *folder.glob("*.yml")]):
        spec = load_pipeline(path, ops=ops, models=models, alert_policies=alert_policies)
        if spec.id in where:
            raise PipelineConfigError(path, "id", f"duplicate pipeline id {spec.id!r}, also in {where[spec.id].name}")
        where[spec.id] = path
        specs.append(spec)
    return specs
