"""Run a generator N times for a seed; write each study and its truth.json."""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from radtriage.synth.dicom import StudyIdentity

GENERATOR_VERSION = "1"

# kind -> module in radtriage.synth that defines generate(rng, index, folder, *, identity)
GENERATORS: dict[str, str] = {
    "ct-head": "ct_head",
    "cta-head": "cta_head",
    "ct-chest": "ct_chest",
    "xr-hand": "xr_hand",
    "ct-rdsr": "rdsr",  # a CT examination's dose SR alone
}

Generator = Callable[[np.random.Generator, int, Path], dict[str, Any]]


def generator(kind: str) -> Generator:
    if kind not in GENERATORS:
        raise ValueError(f"unknown kind {kind!r}; one of {', '.join(GENERATORS)}")
    module = importlib.import_module(f"radtriage.synth.{GENERATORS[kind]}")
    return module.generate


def study_identity(kind: str, seed: int, index: int) -> StudyIdentity:
    """The UIDs, accession number and patient ID of study ``index`` of ``kind`` made with ``seed``."""
    if kind not in GENERATORS:
        raise ValueError(f"unknown kind {kind!r}; one of {', '.join(GENERATORS)}")
    return StudyIdentity(kind, int(seed), int(index))


def synthesize(
    kind: str, n: int, seed: int, out: Path, options: dict[str, Any] | None = None
) -> list[Path]:
    """Write ``n`` studies of ``kind``; study ``i`` depends only on (seed, i, options).

    Its identifiers (UIDs, accession number, patient ID) depend on (kind,
    seed, i) alone: no two studies share one, whatever their kinds and seeds.

    ``options`` go to the generator (e.g. ``matrix=128, positive=True`` for
    ct-head); a generator that does not know one raises `TypeError`.
    """
    generate = generator(kind)
    options = dict(options or {})
    folders = []
    for i in range(n):
        rng = np.random.default_rng([seed, i])
        folder = out / f"{kind}-{seed}-{i:04d}"
        truth = generate(rng, i, folder, identity=study_identity(kind, seed, i), **options)
        truth.update(kind=kind, seed=seed, index=i, generator_version=GENERATOR_VERSION, synthetic=True)
        if options:
            truth["options"] = options
        (folder / "truth.json").write_text(json.dumps(truth, indent=2, sort_keys=True))
        folders.append(folder)
    return folders
