"""`generate`: one chest CT study written as DICOM (localizer, thin main series, 5 mm soft-tissue twin)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from radtriage.synth.acquisition import localizer_series, study_truth
from radtriage.synth.ct_chest.acquisition import _localizer
from radtriage.synth.ct_chest.body import _KERNELS, _PROTOCOL_P, PROTOCOLS, Scan
from radtriage.synth.ct_chest.volume import sample
from radtriage.synth.dicom import CtSeries, Study, StudyIdentity, make_study, write_ct_series


def _series_names(study: Study, scan: Scan, thick: float) -> tuple[str, str, str, str]:
    """(localizer, main, thick twin) series descriptions and the main kernel name, by vendor habit."""
    soft, lung = _KERNELS.get(study.manufacturer, ("STANDARD", "LUNG"))
    k = lung if scan.kernel == "lung" else soft
    t, tt = f"{scan.thickness:g}", f"{thick:g}"
    if study.manufacturer == "SIEMENS":
        return "Topogram 0.6 T20f", f"Thorax {scan.thickness:.1f} {k}", f"Thorax {thick:.1f} {soft}", k
    if study.manufacturer == "GE MEDICAL SYSTEMS":
        return "Scout", f"{t}mm {k}", f"{tt}mm {soft}", k
    main = f"{'LUNG' if scan.kernel == 'lung' else 'CHEST'} {t}mm {k}"
    return "Surview", main, f"MEDIASTINUM {tt}mm {soft}", k


def generate(rng: np.random.Generator, index: int, folder: Path, *, identity: StudyIdentity | None = None,
             **options: Any) -> dict[str, Any]:
    """Write one chest CT study (localizer, thin main series, 5 mm soft-tissue twin) under ``folder``.

    ``options`` go to `sample` (e.g. ``matrix=128`` in tests); ``rdsr=True`` also writes the study's dose SR
    (series 997, `radtriage.synth.rdsr.acquisition_report`).
    """
    rdsr = bool(options.pop("rdsr", False))
    protocol = options.pop("protocol", None) or str(rng.choice(list(PROTOCOLS), p=_PROTOCOL_P))
    description = PROTOCOLS[protocol][0]
    study = make_study(rng, index, description, age_years=(50, 80) if protocol == "low-dose" else (25, 90),
                       identity=identity)
    age = (study.date - study.patient.birth_date).days / 365.25
    s = sample(rng, protocol=protocol, sex=study.patient.sex, age=age, **options)
    scan = s.scan
    g = max(1, int(round(5.0 / scan.dz)))  # slices per 5 mm (4-6 mm) soft-tissue slab
    loc_desc, main_desc, thick_desc, kernel_name = _series_names(study, scan, g * scan.dz)
    soft_kernel = _KERNELS.get(study.manufacturer, ("STANDARD", "LUNG"))[0]
    mas = scan.ctdi_vol / (0.075 if scan.kvp == 120 else 0.05)
    common = dict(protocol=description, body_part="CHEST", kvp=scan.kvp)
    # 1: localizer (topogram), a coronal projection
    loc, loc_origin, loc_sp = _localizer(s.body, scan)
    scout = localizer_series(description=loc_desc, kernel="T20f" if study.manufacturer == "SIEMENS" else soft_kernel,
                             orientation=[1, 0, 0, 0, 0, -1], window=(300, 2000),
                             extra={"ImagePositionPatient": list(loc_origin), "SliceLocation": None,
                                    "SpacingBetweenSlices": None}, **common)
    write_ct_series(folder, rng, study, scout, loc, (1.0, loc_sp[0], loc_sp[1]), loc_origin, slice_thickness=1.0)
    # 2: thin main series
    lung = scan.kernel == "lung"
    write_ct_series(folder, rng, study, CtSeries(
        number=2, description=main_desc, kernel=kernel_name, window_center=-600 if lung else 40,
        window_width=1500 if lung else 400, exposure_mas=mas, ctdi_vol=scan.ctdi_vol, **common),
        s.hu, s.spacing, s.origin, slice_thickness=s.slice_thickness)
    # 3: thick soft-tissue (mediastinal) twin, averaged from the thin slices
    nz = scan.nz // g
    if nz:
        thick = s.hu[: nz * g].reshape(nz, g, scan.matrix, scan.matrix).astype(np.float32).mean(1)
        if lung:  # a soft kernel: smooth the sharp-kernel noise
            thick = ndimage.uniform_filter(thick, (1, 3, 3))
        origin3 = (s.origin[0], s.origin[1], s.origin[2] + (g - 1) * scan.dz / 2)
        write_ct_series(folder, rng, study, CtSeries(
            number=3, description=thick_desc, kernel=soft_kernel, window_center=40, window_width=400,
            exposure_mas=mas, ctdi_vol=scan.ctdi_vol, **common),
            thick, (g * scan.dz, scan.pixel, scan.pixel), origin3, slice_thickness=g * scan.dz)
    if rdsr:
        from radtriage.synth.rdsr import acquisition_report, write_rdsr

        write_rdsr(folder, rng, study, acquisition_report(
            rng, study, protocol=description, region="Chest", phantom=32, ctdivol=scan.ctdi_vol,
            length_mm=scan.nz * scan.dz, kvp=float(scan.kvp)))
    return study_truth(s.truth, study, main=2, series=[
        {"number": 1, "description": loc_desc, "role": "localizer"},
        {"number": 2, "description": main_desc, "role": "main"},
        *([{"number": 3, "description": thick_desc, "role": "thick-soft-tissue"}] if nz else []),
        *([{"number": 997, "description": "Dose Report", "role": "dose"}] if rdsr else [])])
