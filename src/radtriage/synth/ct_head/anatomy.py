"""The drawn anatomy of one head: size, shape, tissue values, normal variants and findings."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from radtriage.synth.ct_head.frame import _direction, _mean_gradient
from radtriage.synth.noise import random_field as _random_field


@dataclass(frozen=True, eq=False)
class _Anatomy:
    age: float
    scale: tuple[float, float, float]
    egg: float
    skull_t: float
    scalp_t: float
    temporalis: float
    cortical: float
    diploe: float
    scalp_hu: float
    gm: float
    wm: float
    csf: float
    venous: float
    atrophy: float
    vent: float
    vent_lr: float  # left/right ventricle size ratio
    leuko: float
    falx_x: float
    frontal_sinus: float
    mastoid: float
    calcs: tuple[tuple[str, tuple[float, float, float], tuple[float, float, float], float], ...]
    lacunes: tuple[tuple[tuple[float, float, float], float], ...]
    scalp_haematoma: tuple[np.ndarray, float, float] | None  # direction, radius, thickness
    gyral: np.ndarray  # direction-space field (sulci)
    gyral_g0: float
    depth: np.ndarray  # direction-space fields (sulcal depth, and the bend of sulci with depth)
    folia: np.ndarray  # posterior-fossa position field
    folia_g0: float
    calibration: float  # scanner water-calibration offset, HU
    mimics: tuple = ()  # `mimics._Mimic`s painted over the head (scanner mode, or asked for)


def _draw_anatomy(rng: np.random.Generator, age: float) -> _Anatomy:
    s = float(np.clip(rng.normal(1.0, 0.045), 0.9, 1.1))
    sx = s * float(np.clip(rng.normal(1.0, 0.035), 0.92, 1.08))
    sy = s * float(np.clip(rng.normal(1.0, 0.03), 0.93, 1.07))
    sz = s * float(np.clip(rng.normal(1.0, 0.03), 0.93, 1.07))
    atrophy = float(np.clip((age - 40) / 45 + rng.normal(0, 0.15), 0.0, 1.2))
    vent = float(np.clip(0.85 + 0.55 * atrophy + rng.normal(0, 0.1), 0.7, 2.0))
    if rng.random() < 0.02:
        vent *= 1.5  # ventriculomegaly
    gm = rng.uniform(35, 40)
    calcs = []
    old = min(max((age - 20) / 60, 0.0), 1.0)
    if rng.random() < 0.3 + 0.5 * old:
        calcs.append(("pineal", (0.0, 24.0, -4.0), (rng.uniform(1.5, 3.5),) * 3, rng.uniform(120, 350)))
    if rng.random() < 0.3 + 0.6 * old:
        r = rng.uniform(1.5, 4.0)
        for side in (-1, 1):
            if rng.random() < 0.9:
                calcs.append(("choroid", (side * 17.0, 27.0, 8.0), (r, r * 1.3, r), rng.uniform(90, 300)))
    if rng.random() < 0.25 * old:
        calcs.append(("falx", (0.0, rng.uniform(-40, 30), rng.uniform(25, 55)), (0.9, rng.uniform(3, 9),
                      rng.uniform(2, 5)), rng.uniform(250, 800)))
    if rng.random() < 0.06:
        for side in (-1, 1):
            calcs.append(("basal ganglia", (side * 18.0, -2.0, -4.0), (2.0, 3.0, 2.5), rng.uniform(70, 200)))
    if rng.random() < 0.5 * old:
        for side in (-1, 1):
            calcs.append(("carotid", (side * 17.0, -14.0, -34.0), (2.2, 5.0, 2.2), rng.uniform(200, 600)))
    lacunes = tuple(
        ((float(rng.choice([-1, 1]) * rng.uniform(10, 26)), float(rng.uniform(-15, 15)),
          float(rng.uniform(-8, 20))), float(rng.uniform(1.5, 3.5)))
        for _ in range(int(rng.poisson(1.5 * old ** 2))))
    haematoma = None
    if rng.random() < 0.12:
        u = _direction(rng.choice([-1, 1]), rng.uniform(-80, 80), rng.uniform(-5, 60))
        haematoma = (u, float(rng.uniform(15, 35)), float(rng.uniform(4, 12)))
    sigma = float(rng.uniform(1.6, 2.2))
    gyral = np.stack([_random_field(rng, (80, 80, 80), sigma) for _ in range(2)])
    folia = _random_field(rng, (96, 72, 56), 1.1)[None]
    return _Anatomy(
        age=age, scale=(sx, sy, sz), egg=float(rng.uniform(0.02, 0.08)),
        skull_t=float(rng.uniform(5.5, 8.0)), scalp_t=float(rng.uniform(3.5, 6.5)),
        temporalis=float(rng.uniform(5, 11)), cortical=float(rng.uniform(1300, 1850)),
        diploe=float(rng.uniform(300, 700)), scalp_hu=float(rng.uniform(28, 45)),
        gm=float(gm), wm=float(gm - rng.uniform(8, 12)), csf=float(rng.uniform(2, 8)),
        venous=float(rng.uniform(40, 55)), atrophy=atrophy, vent=vent,
        vent_lr=float(np.clip(rng.normal(1.0, 0.07), 0.82, 1.18)),
        leuko=float(np.clip((age - 55) / 30 + rng.normal(0, 0.2), 0, 1)),
        falx_x=float(rng.normal(0, 0.8)),
        frontal_sinus=float(0.0 if rng.random() < 0.1 else rng.uniform(0.4, 1.3)),
        mastoid=float(rng.uniform(0.6, 1.3)), calcs=tuple(calcs), lacunes=lacunes,
        scalp_haematoma=haematoma, gyral=gyral, gyral_g0=_mean_gradient(gyral[0]),
        depth=np.stack([_random_field(rng, (24, 24, 24), 2.5) for _ in range(4)]),
        folia=folia, folia_g0=_mean_gradient(folia[0]),
        calibration=float(rng.uniform(-2, 2)),
    )
