"""The registered pre- and post-processing ops that ``pipelines/*.yaml`` name.

A pipeline file lists ops by name with parameters::

    preprocess:
      - {op: ct_hu_volume, params: {min_slices: 12}}
      - {op: ich_windows, params: {size: 160}}
    postprocess:
      - {op: ich_study_result, params: {}}
      - {op: ich_volume_ml, params: {blood_hu: [50, 90]}}

Each op is a function ``(OpContext, params)`` registered on `OPS` with the
pydantic model of its parameters, the stage it belongs to, the tasks it is
for, what it needs in the context and what it gives (`Slot`), and which of
its parameters must agree with the model card's ``preprocessing`` (the model
sees at inference what it saw in training). `OpChain` runs a pipeline's
preprocess ops in order, then the model (`OpChain.infer`), then its
postprocess ops, on one `OpContext`.

This module is the registry and the two ops every task starts from
(``ct_hu_volume``, ``radiograph``). Each task's ops are registered beside
the task, at the end of its module (`ich`, `lvo`, `nodule`, `bone_age`):
thin wrappers of the pre-processing the training code calls too (built on
MONAI transforms) and of `findings`. Importing a task module registers its
ops on `OPS`; `radtriage.inference.tasks` imports all four, so take the
complete registry from there.

Pipeline files are checked against this registry at start-up
(`radtriage.pipelines`): unknown names, bad parameters, an op in the
wrong stage or for another task, and an order in which an op comes before
what it needs all stop start-up with the file, the key and the problem.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any, Literal

import numpy as np
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictInt

from radtriage.domain.case import Finding
from radtriage.imaging.volume import Volume
from radtriage.inference.card import ModelCard
from radtriage.inference.model import Model

if TYPE_CHECKING:
    from radtriage.inference.nodule import Candidates

Stage = Literal["preprocess", "postprocess"]
PRE: Stage = "preprocess"
POST: Stage = "postprocess"

Number = Annotated[float, Field(strict=True, allow_inf_nan=False)]  # an int or a float, never text or a bool


class Slot(str, enum.Enum):
    """What an op needs in the context, and what it gives: the order of a pipeline's ops is checked with them."""

    SERIES = "series"  # the loaded volume: always there
    CT = "CT volume"
    RADIOGRAPH = "radiograph"
    INPUTS = "model inputs"
    OUTPUTS = "model outputs"  # given by the model, between the stages
    CANDIDATES = "nodule candidates"
    PREDICTION = "prediction"
    RESULT = "task result"  # positive, scores and labels
    FINDINGS = "findings"


@dataclass(frozen=True)
class KeyView:
    """How a finding's key image is drawn (`radtriage.imaging.keyimage.render_key_image` arguments)."""

    slice_index: int | None = None
    box: tuple[float, float, float, float] | None = None  # y0, y1, x0, x1 voxels of the slice
    window: tuple[float, float] | None = None  # (level, width); None: the image's percentiles


@dataclass
class OpContext:
    """What the ops of one pipeline run on one series read and write, in order."""

    volume: Volume
    input_names: Sequence[str] = ("input",)  # the model's; a single-input model's input is the first
    thresholds: Mapping[str, float] = field(default_factory=dict)  # the pipeline's over the card's
    inputs: dict[str, np.ndarray] = field(default_factory=dict)  # model input by name, batch axis first
    batch: int | None = None  # rows of the inputs per model call; None: all at once
    outputs: dict[str, np.ndarray] = field(default_factory=dict)  # model output by name, in the model's order
    candidates: Candidates | None = None
    prediction: dict[str, Any] = field(default_factory=dict)  # the task's prediction (the task module's keys)
    positive: bool = False
    scores: dict[str, float] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    findings: list[Finding] = field(default_factory=list)
    views: list[KeyView | None] = field(default_factory=list)  # one per finding

    def threshold(self, name: str, default: float = 0.5) -> float:
        return float(self.thresholds.get(name, default))

    def output(self) -> np.ndarray:
        """The model's first output."""
        return next(iter(self.outputs.values()))

    def add_finding(self, finding: Finding, view: KeyView | None = None) -> None:
        self.findings.append(finding)
        self.views.append(view)


# --------------------------------------------------------------------------- the registry


class Params(BaseModel):
    """Parameters of an op: no key the op does not know."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class NoParams(Params):
    pass


OpFunction = Callable[[OpContext, Any], None]


@dataclass(frozen=True)
class Op:
    name: str
    stage: Stage
    run: OpFunction
    params: type[Params]
    needs: frozenset[Slot]
    gives: frozenset[Slot]
    tasks: frozenset[str] | None  # None: any task
    card_keys: Mapping[str, str]  # parameter -> key of the model card's ``preprocessing`` it must agree with

    @property
    def doc(self) -> str:
        """The first line of the op's docstring: what it does."""
        return (self.run.__doc__ or "").strip().split("\n")[0]


@dataclass(frozen=True)
class Step:
    op: Op
    params: Params


class Registry(Mapping[str, Op]):
    """Op name -> `Op`, filled by the `register` decorator when the modules that hold ops are imported."""

    def __init__(self) -> None:
        self._ops: dict[str, Op] = {}

    def register(self, name: str, stage: Stage, params: type[Params] = NoParams, *, needs: set[Slot],
                 gives: set[Slot], tasks: set[str] | None = None,
                 card_keys: Mapping[str, str] | None = None) -> Callable[[OpFunction], OpFunction]:
        def add(fn: OpFunction) -> OpFunction:
            if name in self._ops:
                raise ValueError(f"op {name!r} registered twice")
            unknown = set(card_keys or ()) - set(params.model_fields)
            if unknown:
                raise ValueError(f"op {name!r}: card_keys name parameters it does not have: {sorted(unknown)}")
            self._ops[name] = Op(name, stage, fn, params, frozenset(needs), frozenset(gives),
                                 None if tasks is None else frozenset(tasks), dict(card_keys or {}))
            return fn

        return add

    def __getitem__(self, name: str) -> Op:
        return self._ops[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._ops)

    def __len__(self) -> int:
        return len(self._ops)

    def chain_problems(self, task: str, preprocess: Sequence[str], postprocess: Sequence[str]
                       ) -> list[tuple[Stage, int | None, str]]:
        """What is wrong with these op names as a ``task`` pipeline: (stage, index or None, problem).

        Each op must be registered, in its own stage, for this task, and come
        after the ops that give what it needs; the preprocess ops must give
        the model inputs and the postprocess ops the task result.
        """
        problems: list[tuple[Stage, int | None, str]] = []
        have = {Slot.SERIES}
        for stage, names in ((PRE, preprocess), (POST, postprocess)):
            for i, name in enumerate(names):
                op = self._ops.get(name)
                if op is None:
                    problems.append((stage, i, f"unknown op {name!r}; registered: {', '.join(sorted(self._ops))}"))
                    continue
                if op.stage != stage:
                    problems.append((stage, i, f"{name} is a {op.stage} op"))
                if op.tasks is not None and task not in op.tasks:
                    problems.append((stage, i, f"{name} is an op of task {', '.join(sorted(op.tasks))}, not {task}"))
                missing = sorted(s.value for s in op.needs - have)
                if missing:
                    problems.append((stage, i, f"{name} needs the {' and the '.join(missing)}, "
                                               "which no op before it gives"))
                have |= op.gives
            if stage == PRE:
                if Slot.INPUTS not in have:
                    problems.append((PRE, None, "no op gives the model inputs"))
                have.add(Slot.OUTPUTS)
        if Slot.RESULT not in have:
            problems.append((POST, None, "no op gives the task result"))
        return problems

    def card_params(self, name: str, card: ModelCard) -> dict[str, Any]:
        """The parameters of op ``name`` that the model card's ``preprocessing`` gives (the others: defaults)."""
        op = self._ops[name]
        return {param: card.preprocessing[key] for param, key in op.card_keys.items() if key in card.preprocessing}

    def chain(self, task: str, preprocess: Sequence[tuple[str, Mapping[str, Any]]],
              postprocess: Sequence[tuple[str, Mapping[str, Any]]]) -> OpChain:
        """The runnable chain of (name, params) pairs; ValueError when they do not make a ``task`` pipeline."""
        problems = [f"{stage}{'' if i is None else f'[{i}]'}: {p}" for stage, i, p in
                    self.chain_problems(task, [n for n, _ in preprocess], [n for n, _ in postprocess])]
        if problems:
            raise ValueError("; ".join(problems))

        def bind(stage: Stage, pairs: Sequence[tuple[str, Mapping[str, Any]]]) -> tuple[Step, ...]:
            steps = []
            for i, (name, params) in enumerate(pairs):
                op = self._ops[name]
                try:
                    steps.append(Step(op, op.params.model_validate(dict(params))))
                except ValueError as exc:  # pydantic's ValidationError
                    raise ValueError(f"{stage}[{i}] {name}: bad params: {exc}") from None
            return tuple(steps)

        return OpChain(bind(PRE, preprocess), bind(POST, postprocess))


def _same(a: Any, b: Any) -> bool:
    """A parameter and a card value agree: numbers within rounding, sequences item by item."""
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return math.isclose(float(a), float(b), rel_tol=1e-6, abs_tol=1e-9)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b


@dataclass(frozen=True)
class OpChain:
    """A pipeline's ops, bound to their parameters: preprocess, the model, postprocess."""

    preprocess: tuple[Step, ...]
    postprocess: tuple[Step, ...]

    def card_problems(self, card: ModelCard) -> list[str]:
        """Parameters that differ from what the model card says the model was trained with."""
        out = []
        for step in (*self.preprocess, *self.postprocess):
            for param, key in step.op.card_keys.items():
                value, trained = getattr(step.params, param), card.preprocessing.get(key)
                if trained is not None and not _same(value, trained):
                    out.append(f"{step.op.name} {param} {value!r} is not the {key} {trained!r} "
                               f"model {card.id} was trained with")
        return out

    def run_preprocess(self, ctx: OpContext) -> None:
        for step in self.preprocess:
            step.op.run(ctx, step.params)

    @staticmethod
    def infer(model: Model, ctx: OpContext) -> None:
        """The model on the context's inputs, ``ctx.batch`` rows per call; outputs concatenated."""
        n = len(next(iter(ctx.inputs.values())))
        if n == 0:  # nothing to score (e.g. no nodule candidates)
            ctx.outputs = {name: np.zeros((0,), np.float32) for name in model.output_names}
            return
        step = ctx.batch or n
        parts = [model.run(**{k: v[i:i + step] for k, v in ctx.inputs.items()}) for i in range(0, n, step)]
        ctx.outputs = {name: np.concatenate([p[name] for p in parts]) for name in model.output_names}

    def run_postprocess(self, ctx: OpContext) -> None:
        for step in self.postprocess:
            step.op.run(ctx, step.params)

    def run(self, model: Model, volume: Volume, thresholds: Mapping[str, float]) -> OpContext:
        """All three stages on one volume."""
        ctx = OpContext(volume, model.input_names, thresholds)
        self.run_preprocess(ctx)
        self.infer(model, ctx)
        self.run_postprocess(ctx)
        return ctx


OPS = Registry()
"""Every op a pipeline file may name once the task modules are imported (`radtriage.inference.tasks` does)."""


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


# --------------------------------------------------------------------------- pre-processing


class CtVolume(Params):
    min_slices: StrictInt = Field(default=1, ge=1)


@OPS.register("ct_hu_volume", PRE, CtVolume, needs={Slot.SERIES}, gives={Slot.CT})
def ct_hu_volume(ctx: OpContext, p: CtVolume) -> None:
    """The series as a CT volume in HU (rescaled by `imaging`) of at least ``min_slices`` slices."""
    if ctx.volume.array.ndim != 3:
        raise ValueError("needs a CT volume, not a radiograph")
    if len(ctx.volume.array) < p.min_slices:
        raise ValueError(f"{len(ctx.volume.array)} slices, fewer than the {p.min_slices} the pipeline needs")


@OPS.register("radiograph", PRE, NoParams, needs={Slot.SERIES}, gives={Slot.RADIOGRAPH})
def radiograph(ctx: OpContext, p: NoParams) -> None:
    """The series as one radiograph (MONOCHROME1 already inverted: denser is brighter)."""
    if not ctx.volume.is_2d:
        raise ValueError("needs a radiograph, not a CT volume")


def _level_width(value: tuple[float, float]) -> tuple[float, float]:
    if value[1] <= 0:
        raise ValueError("a window is (level, width) with a positive width")
    return value


def _low_high(value: tuple[float, float]) -> tuple[float, float]:
    if value[0] >= value[1]:
        raise ValueError("a range is (low, high) with low below high")
    return value


Window = Annotated[tuple[Number, Number], AfterValidator(_level_width)]
HuRange = Annotated[tuple[Number, Number], AfterValidator(_low_high)]
