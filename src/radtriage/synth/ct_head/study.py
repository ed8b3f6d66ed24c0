"""`generate`: one CT head study written as DICOM (localizer, soft-tissue series, bone-kernel twin)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from radtriage.synth.acquisition import localizer_series, pick, study_truth
from radtriage.synth.ct_head.acquisition import _localizer
from radtriage.synth.ct_head.volume import CtHeadOptions, _sample
from radtriage.synth.dicom import CtSeries, Study, StudyIdentity, make_study, write_ct_series

STUDY_DESCRIPTIONS = ("CT HEAD WITHOUT CONTRAST", "CT BRAIN NON-CONTRAST", "CT HEAD W/O CONTRAST",
                      "CT BRAIN PLAIN", "CT HEAD NON CONTRAST (STROKE)", "CT HEAD TRAUMA WO")


def _series_names(study: Study, thickness: float) -> dict[str, Any]:
    """Protocol, series descriptions, kernels and windows as the study's scanner names them."""
    t = f"{thickness:g}"
    if study.manufacturer == "SIEMENS":
        soft, bone = ("Hr38", "Hr64") if "go." in study.model else ("H31s", "H70h")
        return dict(protocol="Head_Routine", scout=("Topogram  0.6  T20s", "T20s"),
                    main=(f"Head  {thickness:.1f}  {soft}", soft, 40, 80),
                    bone=(f"Head  {thickness:.1f}  {bone}", bone, 450, 1500))
    if study.manufacturer.startswith("GE"):
        return dict(protocol="1.1 ROUTINE HEAD", scout=("Scout", "STANDARD"),
                    main=(f"{t}mm STND", "STANDARD", 40, 80), bone=(f"{t}mm BONE", "BONE", 500, 2500))
    if study.manufacturer == "Philips":
        return dict(protocol="Brain", scout=("Surview", "UB"),
                    main=(f"Brain {t}mm", "UB", 40, 80), bone=(f"Brain Bone {t}mm", "YC", 600, 2800))
    return dict(protocol="Head Routine", scout=("Scanogram", "FC26"),
                main=(f"Brain {t} FC26", "FC26", 35, 80), bone=(f"Bone {t} FC35", "FC35", 500, 2500))


def generate(rng: np.random.Generator, index: int, folder: Path, *, matrix: int = 512,
             positive: bool | None = None, subtypes: Sequence[str] | None = None,
             identity: StudyIdentity | None = None, acquisition: str = "phantom",
             mimics: Sequence[str] | None = None, rdsr: bool = False) -> dict[str, Any]:
    """Write one synthetic CT head study under ``folder`` and return its truth.

    Series 1 is a lateral localizer (ImageType ORIGINAL/PRIMARY/LOCALIZER),
    series 2 the soft-tissue (brain) kernel axial series the models read,
    series 3 its bone-kernel twin (same slices and frame of reference, wider
    window). Files are named ``<series:03d>_<instance:04d>.dcm``.
    ``acquisition="scanner"`` reconstructs both from one simulated
    acquisition (`CtHeadOptions`); the default stays "phantom". ``mimics``:
    exactly these normal mimics (`mimics.MIMICS`; None: the mode's default).
    ``rdsr``: also the study's dose SR (series 997, `radtriage.synth.rdsr.acquisition_report`).
    """
    folder = Path(folder)
    age = float(np.clip(rng.normal(64, 17), 18, 96))
    study = make_study(rng, index, pick(rng, STUDY_DESCRIPTIONS), age_years=(age, age), identity=identity)
    smp, an, acq_ = _sample(rng, CtHeadOptions(positive=positive, subtypes=subtypes, matrix=matrix, age=age,
                                               bone_kernel=True, acquisition=acquisition, mimics=mimics))
    acq = smp.truth["acquisition"]
    names = _series_names(study, smp.slice_thickness)
    frame = study.new_uid(rng)
    common = {"FrameOfReferenceUID": frame, "ReconstructionDiameter": round(acq["fov_mm"], 1),
              "DataCollectionDiameter": 500.0, "AcquisitionNumber": 1, "XRayTubeCurrent": int(acq["ma"]),
              "ExposureTime": 1000, "FilterType": "HEAD FILTER"}
    base = dict(protocol=names["protocol"], body_part="HEAD", kvp=acq["kvp"])

    scout, scout_origin, scout_px = _localizer(an, acq_)
    loc = localizer_series(description=names["scout"][0], kernel=names["scout"][1], orientation=[0, 1, 0, 0, 0, -1],
                           window=(476.0, 3000.0), ctdi_vol=0.12, extra={**common, "RescaleType": "US"}, **base)
    write_ct_series(folder, rng, study, loc, scout[None], (scout_px, scout_px, scout_px), scout_origin,
                    slice_thickness=0.6)
    series = [("localizer", loc, 1)]
    for number, role, (desc, kernel, wc, ww), pixels in ((2, "main", names["main"], smp.hu),
                                                         (3, "bone", names["bone"], smp.bone)):
        s = CtSeries(number=number, description=desc, kernel=kernel, ctdi_vol=acq["ctdi_vol_mgy"],
                     window_center=float(wc), window_width=float(ww), extra=common, exposure_mas=acq["mas"], **base)
        write_ct_series(folder, rng, study, s, pixels, smp.spacing, smp.origin, slice_thickness=smp.slice_thickness)
        series.append((role, s, pixels.shape[0]))
    if rdsr:
        from radtriage.synth.rdsr import acquisition_report, write_rdsr

        write_rdsr(folder, rng, study, acquisition_report(
            rng, study, protocol=names["protocol"], region="Head", phantom=16, ctdivol=acq["ctdi_vol_mgy"],
            length_mm=smp.hu.shape[0] * smp.spacing[0], kvp=acq["kvp"], ma=acq["ma"],
            acquisition_type="Sequenced Acquisition"))
    dose = [{"number": 997, "role": "dose", "description": "Dose Report", "images": 1}] if rdsr else []
    return study_truth(smp.truth, study, main=2, patient_sex=study.patient.sex, series=[
        *({"number": s.number, "role": role, "description": s.description, "kernel": s.kernel,
           "image_type": list(s.image_type), "images": n} for role, s, n in series), *dose])
