"""`generate`: one bone-age study written as CR or DX DICOM (PA, sometimes an oblique)."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from radtriage.synth.acquisition import pick
from radtriage.synth.dicom import StudyIdentity, make_study, write_radiograph, xr_modality_of
from radtriage.synth.xr_hand.acquisition import render
from radtriage.synth.xr_hand.subject import DAYS_PER_MONTH

STUDY_DESCRIPTIONS = (
    "XR BONE AGE", "XR HAND LEFT BONE AGE", "BONE AGE STUDY", "XR HAND LT 1V BONE AGE",
    "RAD HAND LEFT FOR BONE AGE", "X-RAY LEFT HAND (BONE AGE)",
)
PA_DESCRIPTIONS = ("HAND PA LEFT", "L HAND PA", "Hand PA Lt", "BONE AGE PA", "LEFT HAND PA")
OBLIQUE_DESCRIPTIONS = ("HAND OBL LEFT", "L HAND OBLIQUE", "Hand Obl Lt")
# Detector pixel pitch (mm) by radiography system model; CR readers offer two.
DETECTOR_SPACING = {
    "FCR PROFECT CS": (0.1, 0.15), "DRX-Evolution": (0.139,), "DigitalDiagnost": (0.143,),
    "CR 30-X": (0.1,),
}
BITS_STORED = {"FCR PROFECT CS": 10, "DRX-Evolution": 12, "DigitalDiagnost": 14, "CR 30-X": 12}


def generate(rng: np.random.Generator, index: int, folder: Path, *,
             identity: StudyIdentity | None = None) -> dict[str, Any]:
    """Write one bone-age study (PA, sometimes also an oblique) and return its truth."""
    folder = Path(folder)
    study_date = dt.date(2026, 1, 1) + dt.timedelta(days=int(rng.integers(0, 300)))
    age_days = int(rng.integers(0, int(18 * 365.25) + 1))
    from radtriage.synth import xr_hand  # draw_subject looked up on the package: tests replace it there

    subject = xr_hand.draw_subject(rng, age_months=age_days / DAYS_PER_MONTH)
    study = make_study(rng, index, pick(rng, STUDY_DESCRIPTIONS),
                       modality="CR", sex=subject.sex, study_date=study_date,
                       birth_date=study_date - dt.timedelta(days=age_days), identity=identity)
    modality = xr_modality_of(study)
    study = replace(study, station=f"{modality}{study.station[2:]}")
    choices = DETECTOR_SPACING.get(study.model, (0.14,))
    spacing = float(pick(rng, choices))
    bits = BITS_STORED.get(study.model, 12)
    with_oblique = rng.random() < 0.4
    pa_first = rng.random() < 0.85
    pa = render(rng, subject, view="PA", pixel_spacing=spacing)
    pa_number = 1 if (pa_first or not with_oblique) else 2
    series = [{"number": pa_number, "view": "PA",
               "description": pick(rng, PA_DESCRIPTIONS)}]
    write_radiograph(folder, rng, study, pa.image, pa.pixel_spacing, series_number=pa_number,
                     description=series[0]["description"], view="PA", bits=bits)
    if with_oblique:  # cheap: half the detector resolution
        obl = render(rng, subject, view="oblique", pixel_spacing=spacing, binning=2)
        number = 3 - pa_number
        desc = pick(rng, OBLIQUE_DESCRIPTIONS)
        write_radiograph(folder, rng, study, obl.image, obl.pixel_spacing, series_number=number,
                         description=desc, view="", bits=bits)
        series.append({"number": number, "view": "oblique", "description": desc})
    truth = dict(pa.truth)
    truth.update(
        chronological_age_months=round(age_days / DAYS_PER_MONTH, 2),
        modality=modality,
        photometric="MONOCHROME1" if modality == "CR" else "MONOCHROME2",
        main_series_number=pa_number,
        series=sorted(series, key=lambda s: s["number"]),
        scanner=f"{study.manufacturer} {study.model}",
    )
    return truth
