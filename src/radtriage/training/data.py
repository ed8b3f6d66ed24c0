"""Drawing synthetic training sets: in worker processes, kept on disk once drawn.

``RADTRIAGE_TRAIN_CACHE`` names a folder where a drawn set is kept as .npz,
keyed by everything that decides its contents (task, seeds, sizes, options
and the generator version), so a second run starts training at once.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np


def draw(fn: Callable[[Any], Any], jobs: Sequence[Any], workers: int = 2, chunksize: int = 1) -> list:
    """``[fn(j) for j in jobs]``, in ``workers`` spawned processes when there is more than one job."""
    if workers > 1 and len(jobs) > 1:
        import multiprocessing as mp

        with mp.get_context("spawn").Pool(workers) as pool:
            return pool.map(fn, jobs, chunksize=chunksize)
    return [fn(j) for j in jobs]


def cached(task: str, key: Sequence[Any], make: Callable[[], dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """The arrays ``make()`` gives, from the cache folder when they were drawn before."""
    from radtriage.synth import GENERATOR_VERSION

    root = os.environ.get("RADTRIAGE_TRAIN_CACHE")
    if not root:
        return make()
    digest = hashlib.sha256(json.dumps([task, *key, GENERATOR_VERSION], sort_keys=True).encode()).hexdigest()[:16]
    path = Path(root) / f"{task}-{digest}.npz"
    if path.is_file():
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    arrays = make()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, **arrays)
    tmp.replace(path)
    return arrays


def site_parts(whole: Any, n_studies: int, smoke: bool, split: Callable[[Any], tuple]) -> tuple:
    """A site's labelled studies as (training, validation, test).

    ``split(whole)``; in a smoke run the whole set three times. Fewer than 10 studies is a `ValueError`.
    """
    if smoke:  # two steps to show the path works: every part is the whole set
        return whole, whole, whole
    if n_studies < 10:
        raise ValueError("a site dataset needs at least 10 labelled studies to split train/validation/test")
    return split(whole)
