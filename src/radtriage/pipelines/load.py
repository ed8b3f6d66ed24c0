"""Reading ``pipelines/*.yaml``: strict YAML, validation, and errors an operator can act on."""

from __future__ import annotations

from collections.abc import Collection, Iterable
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import yaml
from pydantic import ValidationError

from radtriage.pipelines.spec import PipelineConfigError, PipelineSpec


@runtime_checkable
class OpCatalog(Protocol):
    """What the loader needs of the op registry (`radtriage.inference.ops.Registry`), passed in by the caller."""

    def __contains__(self, name: object) -> bool: ...

    def get(self, name: str) -> Any: ...

    def chain_problems(self, task: str, preprocess: list[str], postprocess: list[str]) -> Iterable[tuple[str, int | None, str]]: ...


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


def parse_pipeline(data: Any, file: str | Path, *, ops: OpCatalog | Collection[str] | None = None,
                   models: Collection[str] | None = None,
                   alert_policies: Collection[str] | None = None) -> PipelineSpec:
    """Validate one pipeline document (already read from YAML) or raise `PipelineConfigError`.

    ``ops``: the op registry (`radtriage.inference.tasks.OPS`: names, parameters and their order are
    checked), or just the names allowed, or None (ops unchecked here; the runner refuses unknown ones)."""
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
    problems = op_problems(spec, ops) if isinstance(ops, OpCatalog) else []
    if problems:
        (key, problem), *more = problems
        raise PipelineConfigError(file, key, problem, more)
    return spec


def op_problems(spec: PipelineSpec, registry: OpCatalog) -> list[tuple[str, str]]:
    """(key, problem) for each op parameter its model refuses and each op out of place (`Registry.chain_problems`)."""
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


def load_pipelines(folder: str | Path, *, ops: OpCatalog | Collection[str] | None = None,
                   models: Collection[str] | None = None,
                   alert_policies: Collection[str] | None = None) -> list[PipelineSpec]:
    """Every ``*.yaml`` / ``*.yml`` in ``folder``, validated, in file-name order.

    ``ops`` as for `parse_pipeline`; ``models`` the model ids there are folders for and ``alert_policies`` the
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
