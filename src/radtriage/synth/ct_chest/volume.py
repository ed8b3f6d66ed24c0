"""`sample`: one chest CT drawn from its streams (body, scan, nodules, noise, texture) and its truth."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from radtriage.synth.acquisition import substreams
from radtriage.synth.ct_chest.acquisition import _render
from radtriage.synth.ct_chest.body import _draw_scan, _u, Body, ChestCtSample, draw_body, Nodule, Scan, Tubes
from radtriage.synth.ct_chest.lungs import _draw_nodules, _lung_map, _lung_trees, nodule_volume
from radtriage.synth.ct_chest.tubes import _mediastinal_tubes
from radtriage.synth.options import CtOptions


@dataclass(frozen=True, kw_only=True)
class ChestCtOptions(CtOptions):
    """What `sample` may be asked for (None: drawn).

    n_nodules: exact count (0-5 drawn when None: 30 % none); ``positive``
    True/False forces >= 1 / 0 when ``n_nodules`` is None. nodule_types:
    restrict the types drawn; diameter_mm: (lo, hi) range. matrix: in-plane
    size (FOV fixed by the patient, so smaller matrices mean coarser
    pixels); slice_spacing: mm (drawn from SLICE_SPACINGS, 1.25-2.5, when None;
    1.0 or 0.625 on request); n_slices: fixed slice count centred on the
    lungs (else apex to below the bases). kernel: "soft" | "lung"; protocol:
    one of PROTOCOLS.
    """

    n_nodules: int | None = None
    positive: bool | None = None
    nodule_types: tuple[str, ...] | None = None
    diameter_mm: tuple[float, float] | None = None
    slice_spacing: float | None = None
    n_slices: int | None = None
    kernel: str | None = None
    protocol: str | None = None
    sex: str | None = None
    age: float | None = None


def sample(rng: np.random.Generator, **options: Any) -> ChestCtSample:
    """Draw one chest CT (pure; no I/O); ``options`` are `ChestCtOptions`.

    The anatomy, scanner, nodules and noise come from separate streams of
    ``rng``, so the same seed with and without nodules gives the same
    study apart from the nodules.
    """
    o = ChestCtOptions(**options)
    n_nodules, positive, matrix = o.n_nodules, o.positive, o.matrix
    _, (r_body, r_scan, r_nod, r_noise, r_tex) = substreams(rng, 5)
    body = draw_body(r_body, o.sex, o.age)
    scan = _draw_scan(r_scan, body, matrix=int(matrix), slice_spacing=o.slice_spacing, n_slices=o.n_slices,
                      kernel=o.kernel, protocol=o.protocol)
    z_lo = scan.origin[2] - scan.z_carina
    z_hi = z_lo + (scan.nz - 1) * scan.dz
    med_blood, trachea, marks = _mediastinal_tubes(r_body, body)
    lmap = _lung_map(body, med_blood, trachea)
    lung_blood, bronchi, walls = _lung_trees(r_body, lmap, marks)
    blood = Tubes.cat([med_blood, lung_blood])
    air = Tubes.cat([trachea, bronchi])
    air_walls = np.concatenate([np.full(len(trachea.r0), _u(r_body, 1.5, 2.5)), walls])
    if n_nodules is None:
        if positive is None:
            n_nodules = 0 if r_nod.random() < 0.3 else int(r_nod.choice([1, 2, 3, 4, 5], p=[.4, .25, .15, .12, .08]))
        else:
            n_nodules = int(r_nod.choice([1, 2, 3, 4, 5], p=[.4, .25, .15, .12, .08])) if positive else 0
    big = Tubes.cat([blood.take(np.maximum(blood.r0, blood.r1) >= 1.5),
                     Tubes(air.a, air.b, air.r0 + air_walls, air.r1 + air_walls)])
    nodules = _draw_nodules(r_nod, lmap, big, int(n_nodules), o.nodule_types, o.diameter_mm, (z_lo, z_hi))
    hu = _render(body, scan, blood, air, air_walls, nodules, r_noise, r_tex)
    truth = _truth(body, scan, nodules)
    return ChestCtSample(hu=hu, spacing=scan.spacing, origin=scan.origin, slice_thickness=scan.thickness,
                         truth=truth, body=body, scan=scan)


def _truth(body: Body, scan: Scan, nodules: list[Nodule]) -> dict[str, Any]:
    items = []
    for nod in nodules:
        centre_p = scan.to_patient(np.array(nod.centre))
        vox = scan.to_voxel(np.array(nod.centre))
        vol = nodule_volume(nod)
        R = nod.diameter / 2
        item = {
            "type": nod.kind,
            "centre_mm": [round(float(v), 2) for v in centre_p],
            "centre_voxel_zyx": [round(float(v), 2) for v in vox],
            "diameter_mm": round(nod.diameter, 2),
            "volume_mm3": round(vol, 1),
            "equivalent_diameter_mm": round((6 * vol / math.pi) ** (1 / 3), 2),
            "hu": round(nod.hu, 1),
            "margin": nod.margin,
            "juxtapleural": nod.juxtapleural,
            "side": nod.side,
            "slices": [max(0, int(math.floor(vox[0] - R / scan.dz))),
                       min(scan.nz - 1, int(math.ceil(vox[0] + R / scan.dz)))],
        }
        if nod.core is not None:
            item["solid_diameter_mm"] = round(2 * nod.core[3], 2)
            item["solid_hu"] = round(nod.core[4], 1)
        items.append(item)
    items.sort(key=lambda it: -it["diameter_mm"])
    return {
        "task": "nodule",
        "positive": bool(items),
        "n_nodules": len(items),
        "nodules": items,
        "largest_diameter_mm": items[0]["diameter_mm"] if items else 0.0,
        "patient_sex": body.sex,
        "protocol": scan.protocol,
        "kernel": scan.kernel,
        "slice_thickness_mm": round(scan.thickness, 3),
        "slice_spacing_mm": round(scan.dz, 3),
        "pixel_spacing_mm": round(scan.pixel, 4),
        "matrix": scan.matrix,
        "n_slices": scan.nz,
        "noise_sd_hu": round(scan.noise_sd, 1),
        "kvp": scan.kvp,
        "ctdi_vol_mgy": round(scan.ctdi_vol, 2),
        "dlp_mgy_cm": round(scan.ctdi_vol * (scan.nz * scan.dz + 30) / 10, 1),
    }

