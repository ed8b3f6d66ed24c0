"""`generate`: one bone-age study written as CR or DX DICOM (PA, sometimes an oblique)."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from radtriage.synth.acquisition import pick
from radtriage.synth.dicom import StudyIdentity, make_study, write_radiograph, xr_modality_of
from radtriage.synth.xr_hand.acquisition import DETECTOR_OPTIONS, HandSample, render
from radtriage.synth.xr_hand.detector import BITS_STORED, render_detector
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


def generate(rng: np.random.Generator, index: int, folder: Path, *,
             identity: StudyIdentity | None = None, acquisition: str = "phantom",
             **detector: Any) -> dict[str, Any]:
    """Write one bone-age study (PA, sometimes also an oblique) and return its truth.

    ``acquisition="detector"`` renders through the detector mode (`detector.py`) with the study's system as
    the vendor; ``detector`` options (conditions, variants, kerma_ugy, photometric) apply to it.
    """
    if acquisition not in ("phantom", "detector") or set(detector) - set(DETECTOR_OPTIONS) - {"vendor"}:
        raise TypeError(f"unknown options for xr-hand: {acquisition=}, {sorted(detector)}")
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
    detector = {**detector, "vendor": study.model} if acquisition == "detector" else None
    pa = _view(rng, subject, "PA", spacing, 1, detector)
    pa_number = 1 if (pa_first or not with_oblique) else 2
    series = [{"number": pa_number, "view": "PA",
               "description": pick(rng, PA_DESCRIPTIONS)}]
    _write(folder, rng, study, pa, pa_number, series[0]["description"], "PA", bits)
    if with_oblique:  # cheap: half the detector resolution
        if detector is not None:  # the same department, exposure habits redrawn
            detector["conditions"] = tuple(pa.truth["conditions"])
        obl = _view(rng, subject, "oblique", spacing, 2, detector)
        number = 3 - pa_number
        desc = pick(rng, OBLIQUE_DESCRIPTIONS)
        _write(folder, rng, study, obl, number, desc, "", bits)
        series.append({"number": number, "view": "oblique", "description": desc})
    truth = dict(pa.truth)
    truth.update(
        chronological_age_months=round(age_days / DAYS_PER_MONTH, 2),
        modality=modality,
        photometric=pa.truth.get("acquisition", {}).get(
            "photometric", "MONOCHROME1" if modality == "CR" else "MONOCHROME2"),
        main_series_number=pa_number,
        series=sorted(series, key=lambda s: s["number"]),
        scanner=f"{study.manufacturer} {study.model}",
    )
    return truth


def _view(rng: np.random.Generator, subject, view: str, spacing: float, binning: int,
          detector: dict[str, Any] | None) -> HandSample:
    if detector is None:
        return render(rng, subject, view=view, pixel_spacing=spacing, binning=binning)
    options = {("variant_names" if k == "variants" else k): v for k, v in detector.items()}
    return HandSample(*render_detector(rng, subject, view=view, pixel_spacing=spacing, binning=binning, **options))


def _write(folder: Path, rng: np.random.Generator, study, smp: HandSample, number: int, description: str,
           view: str, bits: int) -> None:
    """The image as the system stores it: its depth and photometric interpretation, what it was exposed with."""
    acq = smp.truth.get("acquisition")
    if acq is None:
        write_radiograph(folder, rng, study, smp.image, smp.pixel_spacing, series_number=number,
                         description=description, view=view, bits=bits)
        return
    exported = "low_resolution" in smp.truth["conditions"] or acq["bits_stored"] == 8
    extra = {"KVP": acq["kvp"], "DetectorType": "STORAGE" if acq["detector"] == "CR" else "SCINTILLATOR",
             "Grid": "FOCUSED" if acq["grid"] else "NONE", "FilterMaterial": "ALUMINUM",
             "ImageType": ["DERIVED", "SECONDARY"] if exported else ["ORIGINAL", "PRIMARY"]}
    write_radiograph(folder, rng, study, smp.image, smp.pixel_spacing, series_number=number,
                     description=description, view=view, bits=acq["bits_stored"],
                     monochrome1=acq["photometric"] == "MONOCHROME1", extra=extra)
