"""Which loader reads a dataset folder: known layouts, detection by marker files, one entry point.

>>> for ex in examples("/data/rsna-ich", "ich"): ...           # layout detected
>>> examples("/data/luna16", "nodule", layout="luna16")          # or named
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from radtriage.datasets import TASKS, Example, luna16, rsna_bone_age, rsna_ich, synthetic


@dataclass(frozen=True)
class Layout:
    name: str
    tasks: tuple[str, ...]
    markers: str  # what detection looks for, in words (for error messages)
    matches: Callable[[Path], bool]
    examples: Callable[[Path, str], Iterator[Example]]


def _is_synthetic(root: Path) -> bool:
    return any(p.is_file() for p in root.glob("*/truth.json"))


def _is_rsna_ich(root: Path) -> bool:
    return any((root / c).is_file() and (root / d).is_dir() for c, d in rsna_ich.SPLITS)


LAYOUTS: dict[str, Layout] = {
    "synthetic": Layout("synthetic", TASKS, "<study>/truth.json (radtriage synth output)",
                        _is_synthetic, synthetic.examples),
    "rsna-ich": Layout("rsna-ich", ("ich",),
                       " or ".join(f"{c} with {d}/" for c, d in rsna_ich.SPLITS),
                       _is_rsna_ich, rsna_ich.examples),
    "luna16": Layout("luna16", ("nodule",), f"{luna16.ANNOTATIONS} with {luna16.SUBSET_GLOB}/ folders",
                     luna16.is_layout, luna16.examples),
    "rsna-bone-age": Layout("rsna-bone-age", ("bone_age",),
                            "a CSV with id, bone age and sex columns in the folder or one below "
                            f"(e.g. {rsna_bone_age.KNOWN_TABLES[0]})",
                            rsna_bone_age.is_layout, rsna_bone_age.examples),
}


def detect(root: Path | str) -> str:
    """The name of the one layout whose marker files ``root`` holds."""
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"{root}: not a folder")
    found = [name for name, layout in LAYOUTS.items() if layout.matches(root)]
    if len(found) == 1:
        return found[0]
    if found:
        raise ValueError(f"{root}: matches several dataset layouts ({', '.join(found)}); name one with layout=")
    looked = "; ".join(f"{name}: {layout.markers}" for name, layout in LAYOUTS.items())
    raise ValueError(f"{root}: no known dataset layout found (looked for {looked})")


def examples(root: Path | str, task: str, layout: str | None = None) -> Iterator[Example]:
    """The task's Examples under ``root``, read by the named (or detected) layout.

    Checks are made here, before iteration starts, so a wrong task or layout
    fails at the call rather than at the first ``next()``.
    """
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r} (known: {', '.join(TASKS)})")
    root = Path(root)
    if layout is None:
        layout = detect(root)
    elif layout not in LAYOUTS:
        raise ValueError(f"unknown dataset layout {layout!r} (known: {', '.join(LAYOUTS)})")
    spec = LAYOUTS[layout]
    if task not in spec.tasks:
        raise ValueError(f"the {layout} layout has no labels for the task {task!r} "
                         f"(it serves: {', '.join(spec.tasks)})")
    if not spec.matches(root):
        raise ValueError(f"{root}: not a {layout} layout (looked for {spec.markers})")
    return spec.examples(root, task)
