"""What a pipeline is: the schema of a ``pipelines/*.yaml`` file.

A pipeline file says which series a task applies to (``select``), which of
several matching series of a study is the best input (``prefer``), which
model runs it (``model``: a folder name under ``models/``), the named pre-
and post-processing ops with their parameters, the thresholds, how a task
result maps to a worklist priority (``priority``) and which alert policy it
feeds (``alert``). Op names are checked against the names (or the registry)
the caller passes in; a file can never name an import path.

The schema is strict about what a file may contain (unknown keys, wrong
types, bad regular expressions and unknown op names are errors) and
`load_pipelines` turns every problem into a `PipelineConfigError` that
names the file, the key and the problem, so a bad file stops start-up with
a message an operator can act on. The ``select`` and ``prefer`` rules are
`radtriage.rules`; matching (`radtriage.routing`) is the forgiving side: header values may be missing, oddly typed or cased.

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

from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, StrictBool, StrictStr, ValidationInfo, field_validator, model_validator

from radtriage.domain import Priority
from radtriage.pipelines.monitor import MonitorSpec
from radtriage.rules import Number, Preference, ResultTest, Select, StrictModel

TASKS = ("ich", "lvo", "nodule", "bone_age")
"""The tasks a pipeline can run (one predictor each in `radtriage.inference`)."""
Task = Literal["ich", "lvo", "nodule", "bone_age"]

_ID = r"^[a-z][a-z0-9_]*$"
_MODEL_ID = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"  # a folder name: no separators, no leading dot
_NAME = r"^[A-Za-z_][A-Za-z0-9_.-]*$"


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


class OpSpec(StrictModel):
    """A registered pre- or post-processing op and its parameters."""

    op: StrictStr
    params: dict[StrictStr, Any] = Field(default_factory=dict)

    @field_validator("op")
    @classmethod
    def _registered(cls, value: str, info: ValidationInfo) -> str:
        if any(c in value for c in ".:/"):
            raise ValueError(f"an op is a registered name, not an import path: {value!r}")
        known = (info.context or {}).get("ops")
        if known is not None and value not in known:
            raise ValueError(f"unknown op {value!r}; registered: {', '.join(sorted(known)) or '(none)'}")
        return value


def _rankable(value: Priority) -> Priority:
    if value is Priority.PENDING_AI:
        raise ValueError("a priority is one of STAT, URGENT, ROUTINE")
    return value


Rank = Annotated[Priority, AfterValidator(_rankable)]


class PriorityRule(StrictModel):
    """``priority`` when every test in ``when`` holds; ``reason`` says why on the worklist."""

    priority: Rank
    when: list[ResultTest] = Field(min_length=1)
    reason: StrictStr | None = None


class PriorityMap(StrictModel):
    """First rule that holds wins; else ``default``."""

    default: Rank = Priority.ROUTINE
    rules: list[PriorityRule] = Field(default_factory=list)


class Commissioning(StrictModel):
    """The evidence a promotion to live needs at a site (`radtriage.governance.evidence`), with why.

    Bounds are the 95% CI bounds of ``radtriage validate``'s metrics.json: ``sensitivity_lower`` and
    ``specificity_lower`` are lower bounds (ich, lvo; nodule: the sensitivity at the operating point),
    ``mae_upper_months`` and ``fp_per_scan_upper`` upper bounds (bone age; nodule)."""

    min_cases: Annotated[int, Field(strict=True, ge=1)]
    min_positive: Annotated[int, Field(strict=True, ge=0)] | None = None  # ich/lvo: positive studies; nodule: nodules
    sensitivity_lower: Annotated[float, Field(strict=True, ge=0, le=1)] | None = None
    specificity_lower: Annotated[float, Field(strict=True, ge=0, le=1)] | None = None
    mae_upper_months: Annotated[float, Field(strict=True, gt=0)] | None = None
    fp_per_scan_upper: Annotated[float, Field(strict=True, gt=0)] | None = None
    reason: Annotated[StrictStr, Field(min_length=1)]


FLOORS_BY_TASK: dict[str, frozenset[str]] = {
    "ich": frozenset({"min_positive", "sensitivity_lower", "specificity_lower"}),
    "lvo": frozenset({"min_positive", "sensitivity_lower", "specificity_lower"}),
    "nodule": frozenset({"min_positive", "sensitivity_lower", "fp_per_scan_upper"}),
    "bone_age": frozenset({"mae_upper_months"}),
}
"""The floors (besides ``min_cases``) that mean something for each task."""


# --------------------------------------------------------------------------- the pipeline


class PipelineSpec(StrictModel):
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
    commissioning: Commissioning | None = None  # None: radtriage.governance's default floors for the task
    monitor: MonitorSpec | None = None  # None: radtriage.monitor's defaults for the task (on)

    @model_validator(mode="after")
    def _floors_fit_the_task(self) -> "PipelineSpec":
        if self.commissioning is not None:
            allowed = FLOORS_BY_TASK[self.task]
            given = {k for k in Commissioning.model_fields if k not in ("min_cases", "reason")
                     and getattr(self.commissioning, k) is not None}
            if given - allowed:
                raise ValueError(f"commissioning: {', '.join(sorted(given - allowed))} do not apply to a {self.task} "
                                 f"pipeline (its floors: min_cases, {', '.join(sorted(allowed))})")
        return self

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
