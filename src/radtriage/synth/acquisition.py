"""Acquisition steps the generators share: random streams, choices, the localizer series, the study truth."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

import numpy as np

from radtriage.synth.dicom import CtSeries, Study

T = TypeVar("T")


def substreams(rng: np.random.Generator, n: int) -> tuple[np.ndarray, list[np.random.Generator]]:
    """``n`` independent streams drawn from ``rng`` (and their seeds), e.g. anatomy, scanner, lesions, noise.

    Forcing an option that changes what one stream draws (a lesion) leaves the others as they were.
    """
    seeds = rng.integers(0, 2**63 - 1, size=n)
    return seeds, [np.random.default_rng(int(s)) for s in seeds]


def pick(rng: np.random.Generator, choices: Sequence[T]) -> T:
    """One of ``choices``, uniformly (one integer drawn)."""
    return choices[int(rng.integers(len(choices)))]


def localizer_series(*, description: str, kernel: str, protocol: str, body_part: str, kvp: float,
                     orientation: Sequence[int], window: tuple[float, float] = (300.0, 2000.0),
                     ctdi_vol: float = 0.1, extra: dict[str, Any] | None = None) -> CtSeries:
    """Series 1 of a CT study: one projection scout (ImageType ORIGINAL/PRIMARY/LOCALIZER), 35 mAs."""
    return CtSeries(number=1, description=description, protocol=protocol, body_part=body_part, kernel=kernel,
                    image_type=("ORIGINAL", "PRIMARY", "LOCALIZER"), kvp=kvp, exposure_mas=35.0,
                    ctdi_vol=ctdi_vol, window_center=window[0], window_width=window[1],
                    extra={**(extra or {}), "ImageOrientationPatient": list(orientation)})


def study_truth(truth: dict[str, Any], study: Study, *, main: int, series: list[dict[str, Any]],
                **more: Any) -> dict[str, Any]:
    """A sample's truth with what the written study adds: its series, which one the models read, the scanner."""
    out = dict(truth)
    out.update(main_series_number=main, series=series, study_description=study.description,
               manufacturer=study.manufacturer, model=study.model, **more)
    return out
