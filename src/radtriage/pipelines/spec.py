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

from pydantic import AfterValidator, Field, StrictBool, StrictStr, ValidationInfo, field_validator

from radtriage.domain import Priority
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
