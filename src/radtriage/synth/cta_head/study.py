"""`generate`: one CTA head study written as DICOM (localizer, thin source series, MIP, sometimes a thick twin)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from radtriage.synth.acquisition import localizer_series, pick, study_truth
from radtriage.synth.cta_head.acquisition import _slabs, localizer
from radtriage.synth.cta_head.volume import sample
from radtriage.synth.dicom import CtSeries, StudyIdentity, make_study, write_ct_series

STUDY_DESCRIPTIONS = (
    "CTA HEAD",
    "CT ANGIO HEAD W CONTRAST",
    "CTA CIRCLE OF WILLIS",
    "CODE STROKE CTA HEAD",
    "CTA BRAIN STROKE PROTOCOL",
)
CONTRAST_AGENTS = ("IOHEXOL 350", "IOPAMIDOL 370", "IOMEPROL 350", "IOPROMIDE 370", "IODIXANOL 320")


_VENDOR = {
    "SIEMENS": ("Hv36", "Br36", "Topogram 0.6 T20s", "CTA_Head_Stroke"),
    "GE MEDICAL SYSTEMS": ("STANDARD", "SOFT", "Scout", "7.2 CTA HEAD"),
    "Philips": ("UB", "XCB", "Surview", "CTA Head/Brain"),
    "Canon Medical Systems": ("FC43", "FC21", "Scanogram", "CTA HEAD STROKE"),
}



def generate(rng: np.random.Generator, index: int, folder: Path, *, identity: StudyIdentity | None = None,
             **options: Any) -> dict[str, Any]:
    """Write one CTA head study: a localizer, the thin axial source series, a thick MIP, sometimes a 5 mm twin.

    ``options`` go to `sample` (e.g. ``lvo=True``, ``matrix=256``).
    """
    folder = Path(folder)
    description = pick(rng, STUDY_DESCRIPTIONS)
    study = make_study(rng, index, description, age_years=(40, 92), identity=identity)
    age = (study.date - study.patient.birth_date).days / 365.25
    smp = sample(rng, age_years=age, **options)
    truth = dict(smp.truth)
    kernel, thick_kernel, scout_name, protocol = _VENDOR.get(study.manufacturer, _VENDOR["SIEMENS"])
    agent = pick(rng, CONTRAST_AGENTS)
    ctdi = float(rng.uniform(25, 60))
    mas = float(rng.uniform(150, 350))
    kvp = float(truth["kvp"])
    wc, ww = [(200.0, 700.0), (300.0, 900.0), (150.0, 600.0)][int(rng.integers(3))]
    dz, thk = smp.spacing[0], smp.slice_thickness
    extra = {"ContrastBolusRoute": "IV", "ContrastBolusVolume": float(rng.choice([50, 60, 70, 80]))}
    with_thick = rng.random() < 0.5
    thick_first = with_thick and rng.random() < 0.5
    numbers = iter(range(2, 10))
    n_thick = next(numbers) if thick_first else None
    n_main = next(numbers)
    if with_thick and n_thick is None:
        n_thick = next(numbers)
    n_mip = next(numbers)
    series = []

    def ct(number, desc, image_type, kern, **kw):
        return CtSeries(number=number, description=desc, protocol=protocol, body_part="HEAD", kernel=kern,
                        image_type=image_type, kvp=kvp, exposure_mas=mas, contrast_agent=agent,
                        extra=dict(extra), **kw)

    scout, sp, org = localizer(smp, rng)
    scout_series = localizer_series(description=scout_name, kernel="T20s", protocol=protocol, body_part="HEAD",
                                    kvp=120.0, orientation=[0, 1, 0, 0, 0, -1])
    write_ct_series(folder, rng, study, scout_series, scout, sp, org, slice_thickness=0.6)
    series.append({"number": 1, "description": scout_name, "role": "localizer"})

    main_desc = f"CTA HEAD {thk:g}mm {kernel}"
    write_ct_series(folder, rng, study, ct(n_main, main_desc, ("ORIGINAL", "PRIMARY", "AXIAL"), kernel,
                                           ctdi_vol=ctdi, window_center=wc, window_width=ww),
                    smp.hu, smp.spacing, smp.origin, slice_thickness=thk)
    series.append({"number": n_main, "description": main_desc, "role": "main"})

    if with_thick:
        vol, off, step = _slabs(smp.hu, dz, 5.0, 5.0, np.mean)
        desc = f"CTA HEAD 5mm {thick_kernel}"
        org = (smp.origin[0], smp.origin[1], smp.origin[2] + off)
        write_ct_series(folder, rng, study, ct(n_thick, desc, ("ORIGINAL", "PRIMARY", "AXIAL"), thick_kernel,
                                               ctdi_vol=ctdi, window_center=40.0, window_width=80.0),
                        vol, (step, smp.spacing[1], smp.spacing[2]), org, slice_thickness=5.0)
        series.append({"number": n_thick, "description": desc, "role": "thick"})

    slab = float(rng.choice([8.0, 10.0, 15.0, 20.0]))
    vol, off, step = _slabs(smp.hu, dz, slab, slab / 2, np.max)
    desc = f"AX MIP {slab:g}mm"
    org = (smp.origin[0], smp.origin[1], smp.origin[2] + off)
    write_ct_series(folder, rng, study, ct(n_mip, desc, ("DERIVED", "SECONDARY", "MIP"), kernel,
                                           ctdi_vol=ctdi, window_center=wc, window_width=ww),
                    vol, (step, smp.spacing[1], smp.spacing[2]), org, slice_thickness=slab)
    series.append({"number": n_mip, "description": desc, "role": "mip"})

    return study_truth(truth, study, main=n_main, series=series, ctdi_vol_mgy=round(ctdi, 2),
                       dlp_mgy_cm=round(ctdi * (smp.hu.shape[0] * dz + thk) / 10.0, 1), contrast_agent=agent,
                       patient_sex=study.patient.sex)
