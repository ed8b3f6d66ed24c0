"""Synthetic adult non-contrast CT head, with or without acute intracranial haemorrhage.

What it models
--------------
An analytic head phantom, drawn anew for every study in a "standard head"
frame that is scaled, rotated and placed in the gantry, rendered slice by
slice at about 0.9 mm in-plane with sub-slices at most 1.7 mm apart through
the slice thickness, then passed through a simple reconstruction chain: slab
averaging over the thickness (partial volume), a Gaussian point-spread
function of the kernel (0.45-0.7 mm for the soft-tissue kernel), linear
resampling to the output matrix, FBP-like correlated noise (a ramp-shaped
noise power spectrum) that is higher through the centre of the head and in
the posterior fossa, and int16 quantisation; pixels outside the
reconstruction circle read -1024 as many scanners write them.

Acquisition: matrix 512 (smaller on request), display FOV 215-250 mm centred
on the head within a few mm, axial slices of 5 mm (55 %), 4, 3.75, 3 or
2.5 mm from the foramen magnum to the vertex (28-40 slices at 4-5 mm,
45-65 at 2.5-3 mm, as such a series holds on a real scanner), or thin
0.625-1.25 mm on request; head rotation SD 2.5 deg yaw, 4 deg pitch, 2 deg
roll; brain noise 2.5-4.5 HU SD at 5 mm and 55 mGy CTDIvol, scaled with
thickness and dose; kVp 100/120/140, CTDIvol 38-65 mGy; a carbon-fibre head
cradle with a foam pad under the occiput. `generate` adds a lateral
localizer and a bone-kernel twin of the main series.

Anatomy (typical textbook values, as in Osborn's *Brain* and standard CT
physics texts; shapes after sectional anatomy atlases):

- air outside -1000 HU; scalp soft tissue 30-45 HU (skin, galea, temporalis
  muscle thicker over the temporal squama);
- skull vault 5.5-8 mm (3-4 mm over the temporal squama), cortical tables
  1200-1900 HU around a diploe of 300-700 HU; skull base with orbital roofs,
  middle cranial fossae, sella and clivus, dense petrous ridges, mastoid and
  frontal/sphenoid/ethmoid air cells; orbits (fat -90 HU, vitreous ~8 HU,
  lens ~110 HU);
- grey matter 35-40 HU, white matter 8-12 HU lower (25-30 HU), CSF 2-8 HU;
  cortical ribbon ~2.7 mm lining sulci (a random gyral pattern), caudate,
  lentiform nucleus, thalamus and insular cortex; interhemispheric fissure with
  the falx, Sylvian fissures, suprasellar and perimesencephalic cisterns,
  tentorium, cerebellum with folia, brainstem, fourth ventricle, cisterna
  magna; lateral ventricles (frontal and occipital horns, bodies, atria,
  temporal horns), third ventricle;
- normal findings that mimic disease: venous blood in the superior sagittal
  and transverse sinuses (40-55 HU), pineal, choroid plexus, falx, basal
  ganglia and carotid siphon calcification (80-700 HU), periventricular white
  matter hypodensity and lacunes with age, scalp haematoma;
- variation: head size and shape (scale, cephalic index, posterior widening),
  rotation of a few degrees, position in the gantry, age-related atrophy
  (sulci, fissures and ventricles widen), left/right ventricle asymmetry.

Haemorrhage (the five RSNA ICH subtypes; appearances as reviewed in Osborn's
*Brain* and Heit, Iv & Wintermark, "Imaging of intracranial hemorrhage",
J Stroke 2017):

- intraparenchymal: lobulated ellipsoid 1-90 mL at typical hypertensive
  (putamen, thalamus, pons, cerebellum) or lobar sites, 55-85 HU, with a
  low-density oedema rim (14-22 HU, 1.5-6 mm) and mass effect when large;
- intraventricular: 50-80 HU blood layering in the dependent occipital horns
  (patient supine), or a cast of the ventricular system;
- subdural: crescent along the inner table, up to 22 mm thick, not crossing
  the midline, 50-80 HU, sometimes with hypodense hyperacute foci;
- epidural: biconvex lens against the skull, 60-90 HU, sometimes with a
  swirl, an overlying fracture and scalp swelling;
- subarachnoid: 45-70 HU blood filling CSF spaces: basal cisterns and
  Sylvian fissures (aneurysmal), convexity sulci (traumatic), or around the
  midbrain (perimesencephalic).

Truth per haemorrhage: subtype, location, side, the slices it appears on
(at least 0.02 mL of blood in the slice), a centre inside it (the blood
voxel nearest its centroid, as a (z, y, x) index and patient x, y, z mm),
its centroid, its volume in mL (partial-volume weighted) and its density;
per study, slice-level labels for "any" and each subtype, and a voxel label
volume (`CtHeadSample.labels`).

What it does NOT model: beam-hardening streaks and cupping, motion, metal,
gantry tilt (pitch is modelled as head rotation instead), sutures and
fractures other than one line beside an epidural haematoma, scalp vessels,
contrast, chronic or subacute (iso/hypodense) collections, haematocrit
levels, contusions, infarcts, tumours, diffuse axonal injury, herniation
beyond a smooth shift of the deep structures, the face below the maxilla
(only the localizer sees the neck, as soft tissue around a spine column).
Anatomy is plausible at the level of a screening model, not an atlas.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from radtriage.synth.dicom import CtSeries, Study, StudyIdentity, make_study, write_ct_series
from radtriage.synth.geometry import rotation

SUBTYPES = ("epidural", "intraparenchymal", "intraventricular", "subarachnoid", "subdural")
"""RSNA intracranial haemorrhage subtypes; label code in `CtHeadSample.labels` is index + 1."""
SUBTYPE_CODE = {name: i + 1 for i, name in enumerate(SUBTYPES)}
PRIMARY_WEIGHTS = {"intraparenchymal": 0.27, "subdural": 0.25, "subarachnoid": 0.22,
                   "intraventricular": 0.14, "epidural": 0.12}
SLICE_MIN_ML = 0.02  # a slice shows a haemorrhage when it holds at least this much blood

# Standard head (mm): inner-table half-axes; per study scaled by (sx, sy, sz).
A_IN, B_IN, C_UP, C_DN = 68.0, 86.0, 70.0, 88.0
F32 = np.float32


# --------------------------------------------------------------------------- public types


@dataclass(frozen=True, eq=False)
class CtHeadSample:
    """One synthetic CT head, as the main (soft-tissue kernel) series holds it.

    ``hu`` is (z, y, x) int16 HU; slice 0 is the most caudal, x grows to the
    patient's left, y to posterior (DICOM LPS, ImageOrientationPatient
    1\\0\\0\\0\\1\\0). ``spacing`` is (slice interval, row, column) mm and
    ``origin`` the patient (x, y, z) mm of voxel (0, 0, 0). ``labels`` holds
    the subtype code (`SUBTYPE_CODE`) where a voxel is at least half blood.
    ``bone`` is the bone-kernel reconstruction of the same slices when asked for.
    """

    hu: np.ndarray
    spacing: tuple[float, float, float]
    origin: tuple[float, float, float]
    slice_thickness: float
    labels: np.ndarray
    truth: dict[str, Any]
    bone: np.ndarray | None = None

    def voxel_to_mm(self, zyx: Sequence[float]) -> tuple[float, float, float]:
        z, y, x = zyx
        return (self.origin[0] + x * self.spacing[2], self.origin[1] + y * self.spacing[1],
                self.origin[2] + z * self.spacing[0])


# --------------------------------------------------------------------------- numeric helpers


def _clip01(x: np.ndarray) -> np.ndarray:
    """Clamp a temporary array to [0, 1] in place (much faster than np.clip)."""
    np.maximum(x, F32(0), out=x)
    np.minimum(x, F32(1), out=x)
    return x


def _ramp(x: np.ndarray) -> np.ndarray:
    """Soft inside-ness of a signed distance in voxel widths (a box-filtered edge)."""
    return _clip01(x + F32(0.5))


def _random_field(rng: np.random.Generator, shape: tuple[int, ...], sigma_cells: float) -> np.ndarray:
    """Zero-mean, unit-SD Gaussian-filtered white noise (periodic)."""
    spec = np.fft.rfftn(rng.standard_normal(shape, dtype=F32))
    k2 = np.zeros(spec.shape)
    for axis, n in enumerate(shape):
        f = np.fft.rfftfreq(n) if axis == len(shape) - 1 else np.fft.fftfreq(n)
        k2 = k2 + (f**2).reshape([-1 if a == axis else 1 for a in range(len(shape))])
    g = np.fft.irfftn(spec * np.exp(-2.0 * (np.pi * sigma_cells) ** 2 * k2), s=shape)
    return ((g - g.mean()) / g.std()).astype(F32)


def _mean_gradient(g: np.ndarray) -> float:
    return float(np.mean(np.sqrt(sum(d * d for d in np.gradient(g)))))


def _trilinear(grid: np.ndarray, fi: np.ndarray, fj: np.ndarray, fk: np.ndarray) -> list[np.ndarray]:
    """Sample each channel of ``grid`` (channels, n0, n1, n2) at fractional indices (1-D arrays), clamped."""
    n0, n1, n2 = grid.shape[1:]
    ids, ts = [], []
    for f, n in ((fi, n0), (fj, n1), (fk, n2)):
        f = np.minimum(np.maximum(f, F32(0)), F32(n - 1.001))
        i = f.astype(np.intp)
        ids.append(i)
        ts.append(f - i)
    (i, j, k), (ti, tj, tk) = ids, ts
    s0, s1 = n1 * n2, n2
    b = (i * n1 + j) * n2 + k
    corners = [b, b + 1, b + s1, b + s1 + 1, b + s0, b + s0 + 1, b + s0 + s1, b + s0 + s1 + 1]
    out = []
    for channel in grid:
        flat = channel.ravel()
        v = [flat[c] for c in corners]
        c00 = v[0] + (v[1] - v[0]) * tk
        c01 = v[2] + (v[3] - v[2]) * tk
        c10 = v[4] + (v[5] - v[4]) * tk
        c11 = v[6] + (v[7] - v[6]) * tk
        c0 = c00 + (c01 - c00) * tj
        c1 = c10 + (c11 - c10) * tj
        out.append(c0 + (c1 - c0) * ti)
    return out


def _gauss_taps(sigma: float) -> np.ndarray:
    r = max(1, int(math.ceil(2.5 * sigma)))
    t = np.exp(-0.5 * (np.arange(-r, r + 1) / max(sigma, 1e-3)) ** 2)
    return (t / t.sum()).astype(F32)


def _blur_yx(a: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian blur over the last two axes (edges replicated)."""
    if sigma < 0.2:
        return a
    taps = _gauss_taps(sigma)
    r = len(taps) // 2
    for axis in (-1, -2):
        pad = [(0, 0)] * a.ndim
        pad[axis] = (r, r)
        p = np.pad(a, pad, mode="edge")
        n = a.shape[axis]
        out = np.zeros_like(a)
        for t, w in enumerate(taps):
            out += w * _slice(p, axis, t, t + n)
        a = out
    return a


def _slice(a: np.ndarray, axis: int, lo: int, hi: int) -> np.ndarray:
    idx = [slice(None)] * a.ndim
    idx[axis] = slice(lo, hi)
    return a[tuple(idx)]


def _upsample2(a: np.ndarray) -> np.ndarray:
    """Linear 2x upsampling over the last two axes (coarse pixel i covers fine pixels 2i, 2i+1)."""
    for axis in (-1, -2):
        def at(s: slice, axis: int = axis) -> tuple:
            return (Ellipsis, s) if axis == -1 else (Ellipsis, s, slice(None))

        shape = list(a.shape)
        shape[axis] *= 2
        out = np.empty(shape, F32)
        q = F32(0.25) * a
        ev, od = out[at(slice(0, None, 2))], out[at(slice(1, None, 2))]
        np.multiply(a, F32(0.75), out=ev)
        od[...] = ev
        ev[at(slice(1, None))] += q[at(slice(None, -1))]
        ev[at(slice(0, 1))] += q[at(slice(0, 1))]
        od[at(slice(None, -1))] += q[at(slice(1, None))]
        od[at(slice(-1, None))] += q[at(slice(-1, None))]
        a = out
    return a


def _basis(n: np.ndarray) -> np.ndarray:
    """A rotation whose third column is the unit vector ``n``."""
    n = n / np.linalg.norm(n)
    a = np.array([1.0, 0, 0]) if abs(n[0]) < 0.9 else np.array([0, 1.0, 0])
    e1 = np.cross(n, a)
    e1 /= np.linalg.norm(e1)
    return np.stack([e1, np.cross(n, e1), n], axis=1)


def _direction(side: float, azimuth_deg: float, elevation_deg: float) -> np.ndarray:
    """Unit vector: lateral to ``side`` (+1 left), azimuth toward posterior, elevation up."""
    az, el = math.radians(azimuth_deg), math.radians(elevation_deg)
    return np.array([side * math.cos(el) * math.cos(az), math.cos(el) * math.sin(az), math.sin(el)])


def _surface_radius(u: np.ndarray, egg: float) -> float:
    """Distance from the head centre to the inner table along unit vector ``u``."""
    lo, hi = 1.0, 200.0
    for _ in range(40):
        m = 0.5 * (lo + hi)
        x, y, z = m * u
        a = A_IN * (1 + egg * y / B_IN)
        c = C_UP if z > 0 else C_DN
        if (x / a) ** 2 + (y / B_IN) ** 2 + (z / c) ** 2 < 1:
            lo = m
        else:
            hi = m
    return lo


def _side_name(side: float) -> str:
    return "left" if side > 0 else "right"


# --------------------------------------------------------------------------- what is drawn


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


@dataclass(frozen=True, eq=False)
class _Acquisition:
    matrix: int
    fov: float
    pixel: float
    thickness: float
    n_slices: int
    origin: tuple[float, float, float]
    centre: np.ndarray  # head centre, patient mm
    rot: np.ndarray  # head axes in patient coordinates
    rotation_deg: tuple[float, float, float]
    noise_sd: float  # soft kernel, brain centre, HU
    psf_mm: float
    kvp: float
    mas: float
    ctdi_vol: float
    recon_centre: tuple[float, float]


def _draw_acquisition(rng: np.random.Generator, an: _Anatomy, matrix: int,
                      thickness: float | None, max_slices: int | None) -> _Acquisition:
    if thickness is None:
        thickness = float(rng.choice([5.0, 4.0, 3.75, 3.0, 2.5], p=[0.55, 0.15, 0.1, 0.1, 0.1]))
    yaw, pitch, roll = (float(np.clip(rng.normal(0, sd), -2.5 * sd, 2.5 * sd)) for sd in (2.5, 4.0, 2.0))
    rot = rotation(*(math.radians(v) for v in (yaw, pitch, roll)))
    sc = np.array(an.scale)
    centre = np.array([rng.normal(0, 4), rng.normal(5, 7), rng.uniform(-180, 20)])
    out = an.skull_t + an.scalp_t
    semi = sc * np.array([A_IN * 1.06 + out, B_IN + out, C_UP + out])
    z_top = centre[2] + math.sqrt(float(np.sum((rot[2] * semi) ** 2)))
    lows = [centre[2] + float(rot[2] @ (sc * np.array(p))) for p in ((0, 40, -62), (0, 15, -64), (30, 30, -58))]
    z_start = min(lows) + rng.uniform(-4, 6)
    z_end = z_top + rng.uniform(-1, 6)
    n = int(math.ceil((z_end - z_start) / thickness))
    if max_slices is not None and n > max_slices:
        mid = centre[2] + float(rot[2] @ (sc * np.array([0, 0, 5.0])))
        z_start = mid - max_slices * thickness / 2
        n = max_slices
    half = max(semi[0], semi[1] + 12) + 6
    fov = float(max(rng.uniform(215, 250), 2 * half))
    pixel = fov / matrix
    rc = (float(centre[0] + rng.normal(0, 2)), float(centre[1] + rng.normal(0, 3)))
    origin = (rc[0] - fov / 2 + pixel / 2, rc[1] - fov / 2 + pixel / 2, z_start + thickness / 2)
    kvp = float(rng.choice([120.0, 120.0, 120.0, 100.0, 140.0]))
    ctdi = float(rng.uniform(38, 65))
    # noise SD in brain for a 5 mm soft-kernel slice at ~55 mGy: typically 2.5-4.5 HU
    noise = rng.uniform(2.5, 4.5) * math.sqrt(5.0 / thickness) * math.sqrt(55.0 / ctdi)
    return _Acquisition(
        matrix=matrix, fov=fov, pixel=pixel, thickness=float(thickness), n_slices=n, origin=origin,
        centre=centre, rot=rot, rotation_deg=(yaw, pitch, roll), noise_sd=float(noise),
        psf_mm=float(rng.uniform(0.45, 0.7)), kvp=kvp, mas=float(rng.uniform(250, 380)),
        ctdi_vol=ctdi, recon_centre=rc,
    )


@dataclass(frozen=True, eq=False)
class _Bleed:
    subtype: str
    location: str
    side: str
    density: float
    geom: dict[str, Any] = field(default_factory=dict)


_IPH_SITES = (  # name, centre (x for the left side), weight, largest volume mL
    ("basal ganglia", (23.0, -4.0, -2.0), 0.35, 80.0),
    ("thalamus", (11.0, 10.0, 1.0), 0.15, 35.0),
    ("lobar", None, 0.30, 90.0),
    ("cerebellum", (24.0, 46.0, -44.0), 0.13, 30.0),
    ("pons", (0.0, 12.0, -38.0), 0.07, 8.0),
)


def _draw_iph(rng: np.random.Generator, egg: float) -> _Bleed:
    k = int(rng.choice(len(_IPH_SITES), p=[s[2] for s in _IPH_SITES]))
    name, centre, _, vmax = _IPH_SITES[k]
    side = float(rng.choice([-1, 1]))
    vol = float(np.clip(math.exp(rng.normal(math.log(12), 0.9)), 1.0, vmax))
    r = (3 * vol * 1000 / (4 * math.pi)) ** (1 / 3)
    e = rng.uniform(0.75, 1.3, 3)
    e /= np.prod(e) ** (1 / 3)
    semi = r * e
    if centre is None:
        lobe_az = {"frontal": (-85, -40), "temporal": (-30, 10), "parietal": (0, 45), "occipital": (50, 85)}
        lobe = str(rng.choice(list(lobe_az)))
        el = rng.uniform(-15, 10) if lobe == "temporal" else rng.uniform(5, 55)
        u = _direction(side, rng.uniform(*lobe_az[lobe]), el)
        depth = max(rng.uniform(14, 26), semi.max() + 6)
        c = u * (_surface_radius(u, egg) - depth)
        name = f"lobar {lobe}"
    else:
        c = np.array(centre) * np.array([side, 1, 1]) + rng.normal(0, 2.5, 3)
    if name == "pons":
        side = 0.0
    return _Bleed("intraparenchymal", name, _side_name(side) if side else "midline",
                  float(rng.uniform(55, 85)), dict(
                      centre=c, semi=semi, rot=rotation(*rng.uniform(-math.pi, math.pi, 3)),
                      oedema=float(rng.uniform(1.5, 6.0)), oedema_hu=float(rng.uniform(14, 22)),
                      lobes=rng.normal(0, 1, (4, 3)), lobe_amp=float(rng.uniform(0.04, 0.14)),
                      lobe_phase=rng.uniform(0, 2 * math.pi, 4), lobe_freq=rng.uniform(2, 5, 4),
                      shift=float(np.clip(0.45 * (r - 9), 0, 9)), side=side))


def _draw_ivh(rng: np.random.Generator, side: float | None = None) -> _Bleed:
    cast = rng.random() < 0.25
    if side is None:
        sides = (-1.0, 1.0) if rng.random() < 0.6 else (float(rng.choice([-1, 1])),)
    else:
        sides = (side,) if rng.random() < 0.5 else (-1.0, 1.0)
    side_name = "bilateral" if len(sides) == 2 else _side_name(sides[0])
    return _Bleed("intraventricular", "ventricular cast" if cast else "occipital horns", side_name,
                  float(rng.uniform(50, 80)), dict(
                      sides=sides, cast=cast, level=float(rng.uniform(-8, -1)),
                      fill=float(rng.uniform(0.7, 1.0))))


def _draw_extra_axial(rng: np.random.Generator, subtype: str) -> _Bleed:
    side = float(rng.choice([-1, 1]))
    if subtype == "subdural":
        u = _direction(side, rng.uniform(-45, 35), rng.uniform(-5, 45))
        theta = rng.uniform(35, 65)
        t = float(np.clip(math.exp(rng.normal(math.log(8), 0.45)), 3, 22))
        loc = "convexity"
        density = float(rng.uniform(50, 80))
        swirl = rng.random() < 0.2
    else:
        lobe = str(rng.choice(["temporal", "frontal", "parietal", "occipital"], p=[0.6, 0.2, 0.15, 0.05]))
        az, el = {"temporal": ((-25, 15), (-15, 10)), "frontal": ((-80, -55), (0, 30)),
                  "parietal": ((0, 40), (30, 55)), "occipital": ((60, 80), (-5, 15))}[lobe]
        u = _direction(side, rng.uniform(*az), rng.uniform(*el))
        theta = rng.uniform(14, 28)
        t = float(min(rng.uniform(8, 28), 0.55 * math.radians(theta) * 70))
        loc = lobe
        density = float(rng.uniform(60, 90))
        swirl = rng.random() < 0.3
    return _Bleed(subtype, loc, _side_name(side), density, dict(
        u=u, cos_max=math.cos(math.radians(theta)), t_max=t, side=side, swirl=swirl,
        swirl_at=rng.uniform(0.1, 0.6), swirl_hu=float(rng.uniform(20, 35)),
        fracture=subtype == "epidural" and rng.random() < 0.6,
        fracture_normal=np.cross(u, rng.normal(0, 1, 3)),
        scalp_swelling=subtype == "epidural" and rng.random() < 0.5,
        shift=float(np.clip(0.6 * (t - 6), 0, 12))))


def _draw_sah(rng: np.random.Generator, egg: float) -> _Bleed:
    pattern = str(rng.choice(["basal", "convexity", "perimesencephalic"], p=[0.5, 0.35, 0.15]))
    blobs: list[tuple[np.ndarray, float, float]] = []
    side = 0.0
    if pattern == "basal":
        lead = float(rng.choice([-1, 1]))
        blobs = [(np.array([0, -12, -22.0]), 12.0, 1.0),
                 (np.array([0, 6, -22.0]), 12.0, rng.uniform(0.5, 1.0)),
                 (np.array([0, -45, 2.0]), 14.0, rng.uniform(0.2, 1.0))]
        for sd in (-1, 1):
            w = 1.0 if sd == lead else rng.uniform(0.3, 1.0)
            blobs += [(np.array([sd * 30, -8, -12.0]), 13.0, w), (np.array([sd * 52, 0, -4.0]), 14.0, w * 0.8)]
        loc, side_name = "basal cisterns and Sylvian fissures", "bilateral"
    elif pattern == "convexity":
        side = float(rng.choice([-1, 1]))
        u = _direction(side, rng.uniform(-70, 70), rng.uniform(5, 60))
        c = u * (_surface_radius(u, egg) - 8)
        blobs = [(c, float(rng.uniform(14, 26)), 1.0)]
        loc, side_name = "convexity sulci", _side_name(side)
    else:
        blobs = [(np.array([0, 4, -26.0]), 9.0, 1.0)]
        loc, side_name = "perimesencephalic cisterns", "midline"
    return _Bleed("subarachnoid", loc, side_name, float(rng.uniform(45, 70)), dict(
        blobs=blobs, fill=float(rng.uniform(0.75, 1.0))))


def _draw_bleeds(rng: np.random.Generator, an: _Anatomy, positive: bool | None,
                 subtypes: Sequence[str] | None, p_positive: float) -> list[_Bleed]:
    draw = {"intraparenchymal": lambda: _draw_iph(rng, an.egg), "intraventricular": lambda: _draw_ivh(rng),
            "subdural": lambda: _draw_extra_axial(rng, "subdural"),
            "epidural": lambda: _draw_extra_axial(rng, "epidural"),
            "subarachnoid": lambda: _draw_sah(rng, an.egg)}
    if subtypes is not None:
        unknown = set(subtypes) - set(SUBTYPES)
        if unknown:
            raise ValueError(f"unknown subtype(s) {sorted(unknown)}; one of {', '.join(SUBTYPES)}")
        if positive is False and subtypes:
            raise ValueError("positive=False contradicts the subtypes asked for")
        return [draw[s]() for s in subtypes]
    is_positive = rng.random() < p_positive
    if positive is not None:
        is_positive = positive
    if not is_positive:
        return []
    names = list(PRIMARY_WEIGHTS)
    first = names[int(rng.choice(len(names), p=list(PRIMARY_WEIGHTS.values())))]
    bleeds = [draw[first]()]
    b = bleeds[0]
    if first == "intraparenchymal" and b.location in ("basal ganglia", "thalamus") and rng.random() < 0.35:
        bleeds.append(_draw_ivh(rng, side=b.geom["side"]))
    elif first in ("subdural", "epidural") and rng.random() < 0.25:  # traumatic SAH beside it
        u = b.geom["u"]
        c = u * (_surface_radius(u, an.egg) - 8)
        bleeds.append(_Bleed("subarachnoid", "convexity sulci", b.side, float(rng.uniform(45, 70)),
                             dict(blobs=[(c, 20.0, 1.0)], fill=float(rng.uniform(0.75, 1.0)))))
    return bleeds


# --------------------------------------------------------------------------- geometry


class _Grid:
    """Sample points (patient mm) and their standard-head coordinates X, Y, Z (z, y, x arrays)."""

    def __init__(self, px: np.ndarray, py: np.ndarray, pz: np.ndarray, steps: tuple[float, float, float],
                 acq: _Acquisition, scale: tuple[float, float, float]):
        self.px, self.py, self.pz, self.steps = px, py, pz, steps
        self.c, self.rot, self.scale = acq.centre, acq.rot, np.array(scale)
        m = acq.rot.T / self.scale[:, None]  # patient offset -> standard coordinates
        dx = (px - self.c[0]).astype(F32)[None, None, :]
        dy = (py - self.c[1]).astype(F32)[None, :, None]
        dz = (pz - self.c[2]).astype(F32)[:, None, None]
        self.X, self.Y, self.Z = (F32(m[i, 0]) * dx + F32(m[i, 1]) * dy + F32(m[i, 2]) * dz for i in range(3))
        self.shape = self.X.shape

    def patient(self, h: Sequence[float]) -> np.ndarray:
        return self.c + self.rot @ (self.scale * np.asarray(h, float))

    def box(self, lo: Sequence[float], hi: Sequence[float]) -> tuple[slice, slice, slice] | None:
        """The index box holding the standard-coordinate box [lo, hi]."""
        lo, hi = np.asarray(lo, float), np.asarray(hi, float)
        mid = self.c + self.rot @ (self.scale * (lo + hi) / 2)
        half = np.abs(self.rot) @ (self.scale * (hi - lo) / 2)
        out = []
        for axis, v, step in ((2, self.pz, self.steps[0]), (1, self.py, self.steps[1]), (0, self.px, self.steps[2])):
            a = max(int(math.floor((mid[axis] - half[axis] - v[0]) / step)), 0)
            b = min(int(math.ceil((mid[axis] + half[axis] - v[0]) / step)) + 1, len(v))
            if a >= b:
                return None
            out.append(slice(a, b))
        return tuple(out)  # type: ignore[return-value]

    def coords(self, s: tuple[slice, slice, slice], centre: Sequence[float] = (0, 0, 0)):
        return self.X[s] - F32(centre[0]), self.Y[s] - F32(centre[1]), self.Z[s] - F32(centre[2])


def _paint(img: np.ndarray, s, a: np.ndarray, v) -> None:
    sub = img[s]
    sub += a * (v - sub)


def _ellipsoid(g: _Grid, c, semi, w: float, rot: np.ndarray | None = None, pad: float = 1.5,
               xb: np.ndarray | None = None):
    """Soft occupancy of an ellipsoid on its index box: (box, alpha) or (None, None).

    ``rot`` turns the ellipsoid's axes (columns) into standard axes; ``xb``
    replaces X (the brain's own coordinate when the midline is shifted).
    """
    c = np.asarray(c, float)
    semi = np.asarray(semi, float)
    ext = (np.full(3, semi.max()) if rot is not None else semi) + pad
    if xb is not None:
        ext = ext + np.array([12.0, 0, 0])
    s = g.box(c - ext, c + ext)
    if s is None:
        return None, None
    X, Y, Z = g.coords(s, c)
    if xb is not None:
        X = xb[s] - F32(c[0])
    if rot is not None:
        X, Y, Z = (F32(rot[0, i]) * X + F32(rot[1, i]) * Y + F32(rot[2, i]) * Z for i in range(3))
    ia, ib, ic = (F32(1 / v) for v in semi)
    qa, qb, qc = X * ia, Y * ib, Z * ic
    r2 = qa * qa + qb * qb + qc * qc
    grad = F32(2) * np.sqrt((qa * ia) ** 2 + (qb * ib) ** 2 + (qc * ic) ** 2) + F32(1e-4)
    return s, _ramp((F32(1) - r2) / (grad * F32(w)))


def _paint_ellipsoid(img, g, c, semi, w, value, rot=None, xb=None, weight=None):
    s, a = _ellipsoid(g, c, semi, w, rot=rot, xb=xb)
    if s is not None:
        _paint(img, s, a if weight is None else a * weight[s], value)
    return s, a


# --------------------------------------------------------------------------- rendering


def _skull_base(X: np.ndarray, Y: np.ndarray, ax: np.ndarray):
    """Floor of the cranial cavity (Z, standard mm) and the bone thickness under it.

    Orbital roofs domed over the orbits and rising anteriorly, a sphenoid ridge,
    middle cranial fossae deepest laterally, the sella, the clivus sloping down
    behind it, and the petrous ridges running posterolaterally from its sides.
    """
    f32 = F32
    dome = _clip01(f32(1) - ((ax - f32(30)) ** 2 + (Y + f32(60)) ** 2) * f32(1 / 400))
    ant = f32(-25) + f32(0.12) * np.maximum(-Y - f32(30), f32(0)) + f32(4) * dome \
        - f32(6) * _ramp((f32(8) - ax) * f32(0.25))
    mid = f32(-51) + f32(0.012) * (ax - f32(42)) ** 2
    sella = _ramp((f32(15) - ax) * f32(0.25))
    mid = mid + sella * (f32(-33) - mid)
    w_ant = _ramp((f32(-27) - f32(0.3) * ax - Y) * f32(1 / 6))  # behind the sphenoid ridge: middle fossa
    floor = mid + w_ant * (ant - mid)
    y_pet = f32(0.6) * np.maximum(ax - f32(14), f32(0))
    w_post = _ramp((Y - y_pet) * f32(0.25))
    central = _ramp((f32(14) - ax) * f32(0.25))
    clivus = f32(-33) - f32(1.6) * np.maximum(Y, f32(0))
    f_post = f32(-200) + central * (clivus + f32(200))
    floor += w_post * (f_post - floor)
    d_pet = (Y - y_pet) * f32(0.857)  # distance from the petrous ridge line
    lateral = _ramp((ax - f32(14)) * f32(0.25)) * _ramp((f32(60) - ax) * f32(0.25))
    f_pet = f32(-31) - f32(0.1) * np.maximum(ax - f32(14), f32(0)) - f32(0.35) * d_pet * d_pet
    floor = np.maximum(floor, floor + lateral * (f_pet - floor))
    w_pet = _ramp((f32(7) - np.abs(d_pet)) * f32(0.25)) * lateral
    t_base = f32(2) + f32(3) * (f32(1) - w_ant) + f32(16) * w_pet + f32(10) * central * _ramp((Y + f32(1)) * f32(0.25))
    return floor, t_base


def _render(g: _Grid, an: _Anatomy, bleeds: Sequence[_Bleed], w: float, detail: bool = True):
    """The noiseless phantom (HU, float32) and the occupancy of each bleed (index -> array)."""
    X, Y, Z = g.X, g.Y, g.Z
    wf, one = F32(w), F32(1)
    zmin = float(Z.min())
    low = zmin < -12.0
    img = np.full(g.shape, -1000.0, F32)
    ax = np.abs(X)
    rho = np.sqrt(X * X + Y * Y + Z * Z)
    rho += F32(1e-3)
    inv_a = one / (F32(A_IN) + F32(an.egg * A_IN / B_IN) * Y)
    cz = np.where(Z > 0, F32(1 / C_UP), F32(1 / C_DN))
    q = (X * inv_a) ** 2 + (Y * F32(1 / B_IN)) ** 2 + (Z * cz) ** 2
    D = rho * (one / np.sqrt(np.maximum(q, F32(1e-6))) - one)  # radial depth under the inner table, mm
    del inv_a, cz, q
    w_t = _clip01((ax / rho - F32(0.72)) * F32(5)) * _clip01(one - np.abs(Z + F32(15)) * F32(1 / 30))
    t_skull = F32(an.skull_t) * (one - F32(0.5) * w_t)
    cells = []
    if low:
        for sd in (-1.0, 1.0):
            s = g.box((sd * 55 - 25, -5, -75), (sd * 55 + 25, 45, -25))
            if s is not None:
                Xs, Ys, Zs = g.coords(s, (sd * 55, 20, -50))
                m = np.exp(-(Xs * Xs + Ys * Ys + Zs * Zs) * F32(1 / 121)) * F32(an.mastoid)
                t_skull[s] += F32(14) * m
                honey = np.cos(Xs * F32(1.6)) * np.cos(Ys * F32(1.6)) * np.cos(Zs * F32(1.6))
                cells.append((s, _clip01(F32(1.6) * m * _ramp((honey + F32(0.2)) * F32(2.5)))))
    if an.frontal_sinus > 0:
        s = g.box((-32, -110, -36), (32, -50, 14))
        if s is not None:
            Xs, Ys, Zs = g.coords(s, (0, 0, -12))
            fs = np.exp(-(Xs * Xs * F32(1 / 196) + Zs * Zs * F32(0.01))) * _ramp((F32(-60) - Ys) * F32(1 / 8))
            fs *= F32(an.frontal_sinus)
            t_skull[s] += F32(7) * fs
            edge = np.minimum(-D[s], D[s] + t_skull[s]) - F32(1.5)
            cells.append((s, _clip01(F32(1.6) * fs) * _ramp(edge / wf)))
    t_out = t_skull + F32(an.scalp_t) + F32(an.temporalis) * w_t
    face = None
    if low:
        face = np.zeros(g.shape, F32)
        s = g.box((-90, -140, -120), (90, -40, -14))
        if s is not None:
            face[s] = _clip01((-g.Y[s] - F32(52)) * F32(1 / 8)) * _clip01((F32(-26) - g.Z[s]) * F32(1 / 8))
        notface = one - face
        _paint_ellipsoid(img, g, (0, 8, -140), (46, 50, 85), w, 35.0)  # neck (the localizer sees it)
        _paint_ellipsoid(img, g, (0, 26, -140), (9, 9, 75), w, 500.0)  # cervical spine
        _paint_ellipsoid(img, g, (0, -60, -60), (50, 38, 38), w, 25.0)  # face
        _paint_ellipsoid(img, g, (0, -100, -62), (11, 14, 20), w, 30.0)  # nose

    # scalp (and scalp haematoma), skull vault, air cells
    a = _ramp((D + t_out) / wf)
    _paint(img, ..., a if face is None else a * notface, F32(an.scalp_hu) + F32(12) * w_t)
    swellings = [(an.scalp_haematoma, 55.0)] if an.scalp_haematoma is not None else []
    swellings += [((b.geom["u"], 22.0, 7.0), 50.0) for b in bleeds if b.geom.get("scalp_swelling")]
    for (u, radius, thick), hu in swellings:
        c = u * (_surface_radius(u, an.egg) + an.skull_t + an.scalp_t)
        s, a = _ellipsoid(g, c, (radius, radius, thick), w, rot=_basis(u))
        if s is not None:
            _paint(img, s, a * _ramp((-D[s] - t_skull[s]) / wf), hu)
    depth_in_bone = np.minimum(-D, D + t_skull)
    bone = _ramp(depth_in_bone / wf)
    if face is not None:
        bone *= notface
    cort = _clip01(one - depth_in_bone * F32(0.5))
    _paint(img, ..., bone, F32(an.diploe) + F32(an.cortical - an.diploe) * cort)
    del depth_in_bone, cort, bone, w_t
    for s, a in cells:
        _paint(img, s, a * ((D[s] < 0) & (D[s] > -t_skull[s])), -1000.0)

    floor = None
    if low:
        floor, t_base = _skull_base(X, Y, ax)
        inside = _ramp((D + t_skull) / wf)
        _paint(img, ..., _ramp((floor - Z) / wf) * _ramp((Z - floor + t_base) / wf) * inside, F32(an.cortical * 0.85))
        _paint(img, ..., _ramp((floor - t_base - Z) / wf) * inside * notface, 40.0)
        del inside, t_base, notface
        s, _ = _paint_ellipsoid(img, g, (0, -14, -46), (15, 14, 11.5), w, 900.0)  # sphenoid sinus
        if s is not None:
            _paint_ellipsoid(img, g, (0, -14, -46), (13.5, 12.5, 10), w, -1000.0)
        s, a = _ellipsoid(g, (0, -66, -48), (12, 22, 20), w)  # ethmoid cells, nasal septum
        if s is not None:
            ethmoid = _ramp((np.cos(g.Y[s] * F32(1.3)) * np.cos(g.Z[s] * F32(1.3)) + F32(0.3)) * F32(2))
            _paint(img, s, a * ethmoid * _ramp((np.abs(g.X[s]) - F32(1.2)) / wf), -1000.0)
        for sd in (-1.0, 1.0):  # orbits: bony walls, fat, optic nerve, globe, lens
            s, _ = _paint_ellipsoid(img, g, (sd * 31, -62, -42), (18.5, 25.5, 18), w, 700.0)
            if s is None:
                continue
            _paint_ellipsoid(img, g, (sd * 31, -62, -42), (17, 24, 16.5), w, -90.0)
            _paint_ellipsoid(img, g, (sd * 20, -46, -37), (3, 14, 3), w, 30.0, rot=rotation(sd * 0.5, 0, 0))
            _paint_ellipsoid(img, g, (sd * 32, -76, -40), (12, 12, 12), w, 40.0)
            _paint_ellipsoid(img, g, (sd * 32, -76, -40), (10.8, 10.8, 10.8), w, 8.0)
            _paint_ellipsoid(img, g, (sd * 32, -85.5, -40), (4.5, 1.8, 4.5), w, 110.0)
            s, _ = _paint_ellipsoid(img, g, (sd * 24, -58, -76), (14.5, 17.5, 15.5), w, 700.0)  # maxillary sinus
            if s is not None:
                _paint_ellipsoid(img, g, (sd * 24, -58, -76), (13, 16, 14), w, -1000.0)
        _paint_ellipsoid(img, g, (0, -22, -72), (11, 8, 9), w, -1000.0)  # nasopharynx

    # subdural / epidural collections push the brain in: its depth grows by their thickness
    D_eff = D
    collections = []
    for i, b in enumerate(bleeds):
        if b.subtype in ("subdural", "epidural"):
            s, t = _collection_thickness(g, b, an, D)
            if s is not None:
                if D_eff is D:
                    D_eff = D.copy()
                D_eff[s] -= t
                collections.append((i, s, t))

    # cranial cavity: CSF, then the brain
    cav = _ramp(D / wf)
    if floor is not None:
        cav *= _ramp((Z - floor) / wf)
    _paint(img, ..., cav, an.csf)
    brain_in = _ramp((D_eff - F32(0.8 + 2.2 * an.atrophy)) / wf) * cav
    if floor is not None:
        brain_in *= _ramp((Z - floor - F32(1.5)) / wf)
    shift, shift_side, shift_at = 0.0, 0.0, None
    for b in bleeds:
        if b.geom.get("shift", 0.0) > shift:
            shift, shift_side = b.geom["shift"], b.geom["side"]
            shift_at = b.geom["centre"] if "centre" in b.geom else b.geom["u"] * 50.0
    xb = X
    if shift >= 1.0:
        kernel = np.exp(-((Y - F32(shift_at[1])) ** 2 + (Z - F32(shift_at[2])) ** 2) * F32(1 / (2 * 45.0**2)))
        xb = X + F32(shift_side * shift) * kernel
    xm = xb - F32(an.falx_x)
    axm = np.abs(xm)

    infra = infra_cb = None
    if zmin < -8:
        y_front = np.maximum(F32(0.6) * (ax - F32(14)), F32(-2))
        dz_tent = F32(-14) - F32(0.3) * np.maximum(Y - F32(8), F32(0)) - F32(0.005) * X * X - Z
        yf = _ramp((Y - y_front) * F32(0.5))
        infra = _ramp(dz_tent * F32(0.5)) * yf
        infra_cb = _ramp((dz_tent - F32(1.5)) * F32(0.5)) * yf
        del y_front, dz_tent, yf

    # CSF spaces of the cerebrum: interhemispheric and Sylvian fissures, sulci; grey matter
    ihf_half = F32(0.5 + 1.0 * an.atrophy)
    z_cc = F32(22) - F32(222) * _ramp((np.abs(Y) - F32(34)) * F32(0.5))
    csf_sp = _ramp((ihf_half - axm) / wf) * _ramp((Z - z_cc) / wf)
    gm = _ramp((F32(2.7) + ihf_half - axm) / wf) * _ramp((Z - z_cc + F32(6)) / wf)
    gm *= F32(0.85)
    s = g.box((-70, -40, -30), (70, 20, 14))
    if s is not None:
        Ys, Zs, xs = g.Y[s], g.Z[s], axm[s]
        x_ins = F32(36) - F32(0.012) * (Ys + F32(6)) ** 2 - F32(0.012) * (Zs + F32(6)) ** 2
        yr = _ramp((Ys + F32(28)) * F32(0.25)) * _ramp((F32(8) - Ys) * F32(0.25))
        zr = _ramp((Zs + F32(20)) * F32(0.25)) * _ramp((F32(6) - Zs) * F32(0.25))
        z_syl = F32(-9) + F32(0.25) * (Ys + F32(30)) + F32(2) * np.sin(Ys * F32(0.15))
        syl = _ramp((F32(0.7 + 1.6 * an.atrophy) - np.abs(Zs - z_syl)) / wf) * _ramp((xs - x_ins) / wf) * yr
        cistern = _ramp((F32(0.5 + 0.6 * an.atrophy) - np.abs(xs - x_ins - F32(1))) / wf) * zr * yr
        csf_sp[s] = np.maximum(csf_sp[s], np.maximum(syl, cistern))
        gm[s] = np.maximum(gm[s], _ramp((F32(1.5) - np.abs(xs - x_ins + F32(1.5))) / wf) * zr * yr)
    if detail:
        sulc, ctx = _sulci(g, an, D_eff, brain_in, w, None if D_eff is D else D - D_eff)
        np.maximum(csf_sp, sulc, out=csf_sp)
        np.maximum(gm, ctx, out=gm)
        del sulc, ctx
    else:
        np.maximum(gm, _ramp((F32(3.5 + 2.2 * an.atrophy) - D_eff) / wf), out=gm)
    for c, semi, frac in (((13, -18, 6), (5, 9, 9), 0.95), ((23, -4, -2), (5.5, 14, 10), 1.0),
                          ((17, -3, -3), (3.5, 8, 6), 0.7), ((10, 10, 0), (9, 13, 10), 0.9)):
        for sd in (-1, 1):
            s, a = _ellipsoid(g, (sd * c[0] + an.falx_x, c[1], c[2]), semi, w, xb=xb)
            if s is not None:
                gm[s] = np.maximum(gm[s], a * F32(frac))
    tissue = brain_in * (one - csf_sp)
    if infra is not None:
        tissue *= one - infra
    _paint(img, ..., tissue, F32(an.wm) + F32(an.gm - an.wm) * gm)
    del gm, csf_sp
    if an.leuko > 0:  # periventricular white-matter hypodensity, lacunes
        for sd in (-1, 1):
            for c, semi in (((sd * 9, -24, 9), (10, 17, 13)), ((sd * 17, 36, 7), (11, 18, 12))):
                s, a = _ellipsoid(g, (c[0] + an.falx_x, c[1], c[2]), semi, w, xb=xb)
                if s is not None:
                    _paint(img, s, a * tissue[s] * F32(0.8 * an.leuko), an.wm - 7.0)
    for c, r in an.lacunes:
        s, a = _ellipsoid(g, c, (r, r * 1.4, r), w, xb=xb)
        if s is not None:
            _paint(img, s, a * tissue[s], an.csf + 6.0)

    # posterior fossa: brainstem with its cisterns, cerebellum with folia
    if infra is not None:
        cb = brain_in * infra_cb
        sb = g.box((-26, -25, -95), (26, 40, -8))
        if sb is not None:
            Xs, Ys, Zs = xm[sb], g.Y[sb], g.Z[sb]
            zc = np.clip(-Zs, F32(8), F32(70))
            yc = F32(8) + F32(0.3) * np.maximum(zc - F32(25), F32(0))
            rx = np.interp(zc, [8, 30, 45, 55, 70], [13, 13, 15, 10, 9]).astype(F32)
            ry = np.interp(zc, [8, 30, 45, 55, 70], [11, 11, 13, 9, 9]).astype(F32)
            rr = np.sqrt((Xs / rx) ** 2 + ((Ys - yc) / ry) ** 2)
            top = _ramp((F32(-10) - Zs) / wf)
            cis = F32(1.2) + F32(0.15) * _ramp((Zs + F32(33)) * F32(0.25))
            stem = _ramp((one - rr) * F32(10) / wf) * top * cav[sb]
            outer = _ramp((cis - rr) * F32(10) / wf) * top
            ring = outer * (one - stem) * cav[sb]
            cb[sb] *= one - outer
            _paint(img, sb, ring, an.csf)
            tissue[sb] *= one - ring
        if detail:
            cb *= one - _folia(g, an, cb, w)
        _paint(img, ..., cb, an.gm - 1.0)
        tissue += cb * (one - tissue)
        if sb is not None:
            _paint(img, sb, stem, an.wm + 3.0)
            tissue[sb] += stem * (one - tissue[sb])
        del cb, infra, infra_cb
    for c, semi in (((0, -12, -22), (13, 11, 4.5)), ((0, 64, -60), (10, 9, 10)), ((0, 30, -16), (6, 5, 4))):
        s, a = _ellipsoid(g, c, semi, w)  # suprasellar, cisterna magna, quadrigeminal
        if s is not None:
            a = a * cav[s]
            _paint(img, s, a, an.csf)
            tissue[s] *= one - a

    # ventricles (and blood in them), choroid plexus
    csf_ext = cav * (one - tissue)  # extraventricular CSF fraction
    del tissue
    vents = _ventricles(g, an, w, xb, min(shift / 25.0, 0.5) if shift >= 1.0 else 0.0, shift_side)
    vent = np.zeros(g.shape, F32)
    for _, _, s, a in vents:
        np.maximum(vent[s], a, out=vent[s])
    for sd in (-1, 1):  # the caudate heads indent the frontal horns
        s, a = _ellipsoid(g, (sd * 13 + an.falx_x, -18, 6), (5, 9, 9), w, xb=xb)
        if s is not None:
            vent[s] *= one - a
    vent *= cav
    _paint(img, ..., vent, an.csf)
    for sd in (-1, 1):
        _paint_ellipsoid(img, g, (sd * (13 + 3 * an.vent) + an.falx_x, 27, 8), (3, 5, 3), w, 38.0, xb=xb, weight=vent)
    lesions: dict[int, np.ndarray] = {}
    for i, b in enumerate(bleeds):
        if b.subtype == "intraventricular":
            lesions[i] = _ivh(g, b, an, vents, vent, w)
            _paint(img, ..., lesions[i], b.density)
    for i, b in enumerate(bleeds):  # blood in the subarachnoid spaces replaces their CSF
        if b.subtype != "subarachnoid":
            continue
        wgt = np.zeros(g.shape, F32)
        for c, sigma, amp in b.geom["blobs"]:
            s = g.box(np.asarray(c) - 3 * sigma, np.asarray(c) + 3 * sigma)
            if s is not None:
                Xs, Ys, Zs = g.coords(s, c)
                blob = F32(amp * 1.6) * np.exp(-(Xs * Xs + Ys * Ys + Zs * Zs) * F32(1 / (2 * sigma * sigma)))
                np.maximum(wgt[s], _clip01(blob), out=wgt[s])
        lesions[i] = wgt * csf_ext * F32(b.geom["fill"])
        img += lesions[i] * F32(b.density - an.csf)
    del vent

    # dural venous sinuses, falx, calcifications
    s = g.box((-8, -100, -45), (8, 100, 90))
    if s is not None:
        Ds, xs = D[s], xm[s]
        sss = _ramp((F32(5.5) - Ds) / wf) * _ramp(Ds / wf) * _ramp((F32(3.2) - F32(0.45) * Ds - np.abs(xs)) / wf)
        _paint(img, s, sss * cav[s], an.venous)
        falx = _ramp((F32(0.45) - np.abs(xs)) / wf) * _ramp((g.Z[s] - z_cc[s] - F32(8)) / wf)
        falx *= _ramp((Ds - F32(1)) / wf)
        _paint(img, s, falx * cav[s], 50.0)
    if zmin < -15:
        s = g.box((-70, 25, -50), (70, 100, -15))
        if s is not None:
            zts = F32(-30) - F32(0.08) * np.abs(g.X[s])
            width = np.where(g.X[s] < 0, F32(3.6), F32(2.8))
            ts = _ramp((width - np.abs(g.Z[s] - zts)) / wf) * _ramp((F32(5) - D[s]) / wf)
            ts *= _ramp((g.Y[s] - F32(30)) / wf)
            _paint(img, s, ts * cav[s], an.venous)
    for name, c, semi, hu in an.calcs:
        _paint_ellipsoid(img, g, (c[0] + (an.falx_x if name != "carotid" else 0), c[1], c[2]), semi, w, hu,
                         xb=None if name == "carotid" else xb)
    if low:  # cavernous sinus and carotid soft tissue beside the sella
        for sd in (-1.0, 1.0):
            s, a = _ellipsoid(g, (sd * 17, -14, -34), (4, 7, 5), w)
            if s is not None:
                _paint(img, s, a * _ramp((floor[s] - g.Z[s] + F32(3)) / wf), 45.0)

    # haemorrhage
    for i, b in enumerate(bleeds):
        if b.subtype == "intraparenchymal":
            lesions[i] = np.zeros(g.shape, F32)
            s, clot, oedema, value = _iph(g, b, w)
            if s is not None:
                brainish = cav[s] * (one - csf_ext[s])
                _paint(img, s, oedema * brainish, b.geom["oedema_hu"])
                clot *= cav[s]
                _paint(img, s, clot, value)
                lesions[i][s] = clot
    for i, s, t in collections:
        b = bleeds[i]
        Ds = D[s]
        a = _ramp(Ds / wf) * _ramp((t - Ds) / wf) * cav[s]
        value = F32(b.density)
        if b.geom["swirl"]:
            u = b.geom["u"]
            pos = u * (_surface_radius(u, an.egg) - b.geom["t_max"] * b.geom["swirl_at"])
            Xs, Ys, Zs = g.coords(s, pos)
            value = value - F32(b.geom["swirl_hu"]) * np.exp(-(Xs * Xs + Ys * Ys + Zs * Zs) * F32(1 / 32))
        _paint(img, s, a, value)
        lesions[i] = np.zeros(g.shape, F32)
        lesions[i][s] = a
        if b.geom["fracture"]:
            n = b.geom["fracture_normal"] / np.linalg.norm(b.geom["fracture_normal"])
            Xs, Ys, Zs = g.coords(s)
            dist = np.abs(Xs * F32(n[0]) + Ys * F32(n[1]) + Zs * F32(n[2]))
            crack = _ramp((F32(0.5) - dist) / wf) * _ramp(-Ds / wf) * _ramp((Ds + t_skull[s]) / wf)
            _paint(img, s, crack * (t > 0), 45.0)
    img += F32(an.calibration) * (img > -900)
    return img, lesions


def _ventricles(g: _Grid, an: _Anatomy, w: float, xb: np.ndarray, compress: float, lesion_side: float):
    """Ventricle compartments: list of (name, side, box, alpha)."""
    out = []
    for sd in (-1.0, 1.0):
        v = an.vent * (an.vent_lr if sd > 0 else 1.0)
        if sd == lesion_side:
            v *= 1.0 - compress
        f = an.falx_x
        parts = (
            ("frontal", (f + sd * (6 + 2 * v), -22.0, 8.0), (3.5 * v, 13.0, 8.0), -sd * 0.35),
            ("body", (f + sd * (5 + 2.5 * v), 2.0, 14.0), (3.0 * v, 20.0, 6.0), 0.0),
            ("atrium", (f + sd * (13 + 3 * v), 26.0, 8.0), (5.0 * v, 10.0, 8.0 * (0.8 + 0.2 * v)), 0.0),
            ("occipital", (f + sd * (16 + 2 * v), 40.0, 6.0), (2.5 * v, 12.0, 4.0 * v), sd * 0.35),
            ("temporal", (sd * 29.0, -8.0, -18.0), (1.6 * v ** 1.5, 13.0, 2.2 * v), sd * 0.2),
        )
        for name, c, semi, yaw in parts:
            s, a = _ellipsoid(g, c, semi, w, rot=rotation(yaw, 0.0, 0.0) if yaw else None, xb=xb)
            if s is not None:
                out.append((name, sd, s, a))
    for name, c, semi in (("third", (an.falx_x, -2.0, -6.0), (1.2 * an.vent ** 1.5, 13.0, 9.0)),
                          ("fourth", (0.0, 30.0, -40.0), (6.0 * an.vent ** 0.5, 4.0, 7.0))):
        s, a = _ellipsoid(g, c, semi, w, xb=xb if name == "third" else None)
        if s is not None:
            out.append((name, 0.0, s, a))
    return out


def _sulci(g: _Grid, an: _Anatomy, D_eff: np.ndarray, brain_in: np.ndarray, w: float,
           push: np.ndarray | None = None):
    """Sulcal CSF and cortical grey matter from a random gyral pattern.

    Sulci are the zero surfaces of smooth random fields over directions from
    the head centre (deep primary and shallow secondary sulci), bent with
    depth by three more fields so that they wind, their depth varying too.
    """
    sas = 0.8 + 2.2 * an.atrophy
    t_ctx = F32(2.7)
    sulc = np.zeros(g.shape, F32)
    ctx = np.zeros(g.shape, F32)
    idx = np.flatnonzero((brain_in > 0) & (D_eff < sas + 27))
    if idx.size == 0:
        return sulc, ctx
    X, Y, Z = (a.ravel()[idx] for a in (g.X, g.Y, g.Z))
    rho = np.sqrt(X * X + Y * Y + Z * Z) + F32(1e-3)
    u = (X / rho, Y / rho, Z / rho)
    d_rel = D_eff.ravel()[idx] - F32(sas)
    n, nd = an.gyral.shape[1], an.depth.shape[1]
    kd = F32((nd - 1) / 2.2)
    k = F32((n - 1) / 2.2)
    mod = _trilinear(an.depth, *((ui + F32(1.1)) * kd for ui in u))  # depth, and the bend vector
    bend = np.maximum(d_rel, F32(0)) * F32(0.006)
    uw = [ui + bend * mod[1 + i] for i, ui in enumerate(u)]
    norm = F32(1) / np.sqrt(uw[0] * uw[0] + uw[1] * uw[1] + uw[2] * uw[2])  # stay on the unit sphere
    G = _trilinear(an.gyral, *((ui * norm + F32(1.1)) * k for ui in uw))
    scale = rho * F32(2.2 / (n - 1) / an.gyral_g0)  # field units -> mm from its zero surface
    wf = F32(w)
    s_out, c_out = np.zeros(idx.size, F32), _ramp((t_ctx - d_rel) / wf)
    effaced = F32(1) if push is None else F32(1) - F32(0.8) * _clip01(push.ravel()[idx] * F32(1 / 5))
    deep = np.minimum(np.maximum(F32(16) + F32(5) * mod[0], F32(9)), F32(24))
    for ch, depth, width in ((0, deep, F32(1.0)), (1, deep * F32(0.45), F32(0.7))):
        dist = np.abs(G[ch]) * scale
        half = F32(0.3 + 0.9 * an.atrophy) * width * (F32(1) + F32(0.5) * _clip01(F32(1) - d_rel / depth)) * effaced
        np.maximum(s_out, _ramp((half - dist) / wf) * _ramp((depth - d_rel) / wf), out=s_out)
        np.maximum(c_out, _ramp((half + t_ctx - dist) / wf) * _ramp((depth + t_ctx - d_rel) / wf), out=c_out)
    sulc.ravel()[idx] = s_out
    ctx.ravel()[idx] = c_out
    return sulc, ctx


def _folia(g: _Grid, an: _Anatomy, cb: np.ndarray, w: float) -> np.ndarray:
    """Fine CSF clefts between the cerebellar folia."""
    out = np.zeros(g.shape, F32)
    idx = np.flatnonzero(cb > 0)
    if idx.size == 0:
        return out
    X, Y, Z = (a.ravel()[idx] for a in (g.X, g.Y, g.Z))
    step = F32(1.5)  # mm per cell; the field spans X -72.., Y -10.., Z -88..
    G = _trilinear(an.folia, (X + F32(72)) / step, (Y + F32(10)) / step, (Z + F32(88)) / step)[0]
    dist = np.abs(G) * F32(1.5 / an.folia_g0)
    out.ravel()[idx] = _ramp((F32(0.25 + 0.5 * an.atrophy) - dist) / F32(w)) * F32(0.8)
    return out


def _collection_thickness(g: _Grid, b: _Bleed, an: _Anatomy, D: np.ndarray):
    """Box and thickness (mm) of a subdural crescent or epidural lens over the inner table."""
    u, cos_max, t_max = b.geom["u"], b.geom["cos_max"], b.geom["t_max"]
    theta = math.acos(cos_max)
    e = _basis(u)
    corners = []
    for k in range(17):
        phi = 2 * math.pi * k / 16
        rim = math.cos(phi) * e[:, 0] + math.sin(phi) * e[:, 1]
        p = u if k == 16 else math.cos(theta) * u + math.sin(theta) * rim
        r = _surface_radius(p, an.egg)
        corners += [p * (r + 14), p * max(r - t_max - 3, 0)]  # outward: the skull, for a fracture
    corners = np.array(corners)
    s = g.box(corners.min(0), corners.max(0))
    if s is None:
        return None, None
    X, Y, Z = g.coords(s)
    rho = np.sqrt(X * X + Y * Y + Z * Z) + F32(1e-3)
    q = (F32(1) - (X * F32(u[0]) + Y * F32(u[1]) + Z * F32(u[2])) / rho) * F32(1 / (1 - cos_max))
    prof = _clip01(F32(1) - q)
    prof = prof ** F32(0.75) if b.subtype == "subdural" else np.sqrt(prof)
    t = F32(t_max) * prof
    if b.subtype == "subdural":  # the falx stops it at the midline
        t *= _ramp((F32(b.geom["side"]) * X - F32(3)) * F32(1 / 3))
    return s, t * (D[s] > -2)


def _iph(g: _Grid, b: _Bleed, w: float):
    """Box, clot and oedema occupancy and clot density of an intraparenchymal haematoma."""
    geo = b.geom
    c, semi, rot = geo["centre"], geo["semi"], geo["rot"]
    ext = semi.max() * (1 + 2 * geo["lobe_amp"]) + geo["oedema"] + 2
    s = g.box(c - ext, c + ext)
    if s is None:
        return None, None, None, None
    X, Y, Z = g.coords(s, c)
    qx, qy, qz = (F32(rot[0, i]) * X + F32(rot[1, i]) * Y + F32(rot[2, i]) * Z for i in range(3))
    r = np.sqrt((qx / F32(semi[0])) ** 2 + (qy / F32(semi[1])) ** 2 + (qz / F32(semi[2])) ** 2) + F32(1e-4)
    lob = np.zeros_like(r)
    for v, f, ph in zip(geo["lobes"], geo["lobe_freq"], geo["lobe_phase"]):
        v = v / np.linalg.norm(v)
        proj = qx * F32(v[0] / semi[0]) + qy * F32(v[1] / semi[1]) + qz * F32(v[2] / semi[2])
        lob += np.cos(F32(f) * proj / r + F32(ph))
    r *= F32(1) + F32(geo["lobe_amp"] / 2) * lob
    d = (F32(1) - r) * F32(float(np.mean(semi)))
    wf = F32(w)
    clot = _ramp(d / wf)
    oedema = _ramp((d + F32(geo["oedema"])) / wf) * (F32(1) - clot)
    return s, clot, oedema, F32(b.density) + F32(2) * lob


def _ivh(g: _Grid, b: _Bleed, an: _Anatomy, vents, vent: np.ndarray, w: float) -> np.ndarray:
    """Blood in the ventricles: layering in the dependent (posterior, patient supine) horns, or a cast."""
    out = np.zeros(g.shape, F32)
    sides, cast = b.geom["sides"], b.geom["cast"]
    keep = ("atrium", "occipital", "body", "frontal", "third", "fourth") if cast else ("atrium", "occipital")
    for name, sd, s, a in vents:
        if name not in keep or (sd not in sides and sd != 0.0):
            continue
        ref = sides[0] if sd == 0.0 else sd
        y_atrium = float(g.patient((an.falx_x + ref * (13 + 3 * an.vent), 26.0, 8.0))[1])
        level = y_atrium + b.geom["level"] - (40.0 if cast else 0.0)
        py = g.py[s[1]].astype(F32)[None, :, None]
        dep = _ramp((py - F32(level)) / F32(w))
        np.maximum(out[s], a * dep * vent[s] * F32(b.geom["fill"]), out=out[s])
    return out


# --------------------------------------------------------------------------- reconstruction


def _noise(rng: np.random.Generator, shape: tuple[int, int, int], pixel: float, fc: float) -> np.ndarray:
    """Unit-SD noise with an FBP-like power spectrum (ramp x smooth apodisation), independent per slice."""
    nz, ny, nx = shape
    fy = np.fft.fftfreq(ny, d=pixel)[:, None]
    fx = np.fft.rfftfreq(nx, d=pixel)[None, :]
    f = np.sqrt(fy * fy + fx * fx)
    amp = np.sqrt((f + 0.04 * fc) * np.exp(-((f / fc) ** 2))).astype(F32)
    spec = rng.standard_normal((nz, ny, nx // 2 + 1, 2), dtype=F32).view(np.complex64)[..., 0]
    spec *= amp
    out = np.fft.irfft2(spec, s=(ny, nx)).astype(F32, copy=False)
    out *= F32(1.0 / float(out[: max(1, nz // 4)].std()))
    return out


def _reconstruct(rng: np.random.Generator, slab: np.ndarray, acq: _Acquisition, factor: int,
                 hbox: tuple[slice, slice], noise_map: tuple[np.ndarray, np.ndarray], *, psf_mm: float,
                 noise_sd: float, fc: float, sharpen: float = 0.0) -> np.ndarray:
    """Coarse slab-averaged HU -> output matrix: PSF blur, resample, noise, quantise to int16 HU."""
    img = _blur_yx(slab[:, hbox[0], hbox[1]], psf_mm / (acq.pixel * factor))
    if factor == 2:
        img = _upsample2(img)
    if sharpen:
        img = img + F32(sharpen) * (img - _blur_yx(img, 1.2))
    m = acq.matrix
    full = np.full((slab.shape[0], m, m), -1000.0, F32)
    full[:, hbox[0].start * factor:hbox[0].stop * factor, hbox[1].start * factor:hbox[1].stop * factor] = img
    del img
    noise = _noise(rng, full.shape, acq.pixel, fc)
    central, low = noise_map
    noise *= central[None]
    noise *= (F32(noise_sd) * low)[:, None, None]
    full += noise
    del noise
    yy, xx = np.mgrid[0:m, 0:m]
    full[:, np.hypot(yy - (m - 1) / 2, xx - (m - 1) / 2) > m / 2] = -1024  # outside the reconstruction circle
    np.rint(full, out=full)
    np.clip(full, -1024, 3071, out=full)
    return full.astype(np.int16)


def _coarse_axes(acq: _Acquisition, factor: int):
    """Centres (patient mm) of the coarse render pixels; coarse pixel i covers output pixels f*i..f*i+f-1."""
    m = acq.matrix // factor
    step = acq.pixel * factor
    px = acq.origin[0] + (factor - 1) / 2 * acq.pixel + step * np.arange(m)
    py = acq.origin[1] + (factor - 1) / 2 * acq.pixel + step * np.arange(m)
    return px, py


def _fibonacci_sphere(n: int) -> np.ndarray:
    k = np.arange(n) + 0.5
    z = 1 - 2 * k / n
    r = np.sqrt(1 - z * z)
    phi = math.pi * (1 + 5**0.5) * k
    return np.stack([r * np.cos(phi), r * np.sin(phi), z], axis=1)


def _slice_boxes(acq: _Acquisition, an: _Anatomy, px: np.ndarray, py: np.ndarray, z_centres: np.ndarray,
                 half_depth: float) -> list[tuple[slice, slice] | None]:
    """Per slice, the coarse in-plane index box that holds the head (with a margin)."""
    u = _fibonacci_sphere(4000)
    out = an.skull_t + an.scalp_t + an.temporalis
    head = u * np.array([A_IN * (1 + an.egg) + out, B_IN + out, 0.0])
    head[:, 2] = u[:, 2] * np.where(u[:, 2] > 0, C_UP + out, C_DN + out)
    shapes = [head, np.array([0, -62, -58]) + u * [58, 36, 38], np.array([0, -100, -62]) + u * [11, 14, 20],
              np.array([0, 8, -140]) + u * [46, 50, 85]]
    pts = acq.centre + (np.concatenate(shapes) * np.array(an.scale)) @ acq.rot.T
    margin, step = 14.0, px[1] - px[0]
    boxes = []
    for zc in z_centres:
        sel = pts[np.abs(pts[:, 2] - zc) <= half_depth + 10]
        if len(sel) == 0:
            boxes.append(None)
            continue
        lo = sel[:, :2].min(0) - margin
        hi = sel[:, :2].max(0) + margin
        x0 = max(int((lo[0] - px[0]) // step), 0)
        x1 = min(int((hi[0] - px[0]) // step) + 2, len(px))
        y0 = max(int((lo[1] - py[0]) // step), 0)
        y1 = min(int((hi[1] - py[0]) // step) + 2, len(py))
        boxes.append((slice(y0, y1), slice(x0, x1)) if x0 < x1 and y0 < y1 else None)
    return boxes


def _headrest(img: np.ndarray, px: np.ndarray, py: np.ndarray, acq: _Acquisition, an: _Anatomy):
    """A carbon-fibre head cradle with a foam pad under the occiput (a cylinder along z), where there is air."""
    back = acq.centre[1] + (B_IN + an.skull_t + an.scalp_t) * an.scale[1]
    radius = (A_IN + an.skull_t + an.scalp_t + an.temporalis) * an.scale[0] + 4.0
    cy = back + 5.0 - radius
    r = np.hypot(px[None, :] - acq.centre[0], py[:, None] - cy).astype(F32)
    below = _ramp((py[:, None] - cy - F32(0.25 * radius)).astype(F32))
    pad = _ramp(r - F32(radius - 7)) * _ramp(F32(radius) - r) * below
    shell = _ramp(r - F32(radius)) * _ramp(F32(radius + 3.5) - r) * below
    add = pad * F32(150) + shell * F32(1180)
    img += add[None] * (img < -990)
    rows, cols = np.nonzero(add > 0)
    if len(rows) == 0:
        return slice(0, 0), slice(0, 0)
    return slice(int(rows.min()), int(rows.max()) + 1), slice(int(cols.min()), int(cols.max()) + 1)


def _render_slices(an: _Anatomy, acq: _Acquisition, bleeds: Sequence[_Bleed], factor: int):
    """Render slice by slice on the head's box with sub-slices through the thickness, and average them.

    Returns the coarse (n_slices, m, m) HU slab and each bleed's occupancy on the same grid.
    """
    px, py = _coarse_axes(acq, factor)
    m = len(px)
    n_sub = max(1, int(math.ceil(acq.thickness / 1.7)))
    offsets = acq.thickness * ((np.arange(n_sub) + 0.5) / n_sub - 0.5)
    z_centres = acq.origin[2] + acq.thickness * np.arange(acq.n_slices)
    boxes = _slice_boxes(acq, an, px, py, z_centres, acq.thickness / 2)
    w = acq.pixel * factor / float(np.mean(an.scale))
    slab = np.full((acq.n_slices, m, m), -1000.0, F32)
    occupancy = [np.zeros((acq.n_slices, m, m), F32) for _ in bleeds]
    steps = (acq.thickness / n_sub, acq.pixel * factor, acq.pixel * factor)
    per = max(1, 6 // n_sub)  # slices rendered together: few enough planes to stay in cache
    for k0 in range(0, acq.n_slices, per):
        ks = list(range(k0, min(k0 + per, acq.n_slices)))  # contiguous: the sub-slices stay evenly spaced
        inside = [boxes[k] for k in ks if boxes[k] is not None]
        if not inside:
            continue
        ys = slice(min(b[0].start for b in inside), max(b[0].stop for b in inside))
        xs = slice(min(b[1].start for b in inside), max(b[1].stop for b in inside))
        pz = (z_centres[ks][:, None] + offsets[None, :]).ravel()
        grid = _Grid(px[xs], py[ys], pz, steps, acq, an.scale)
        img, lesions = _render(grid, an, bleeds, w)
        shape = (len(ks), n_sub, img.shape[1], img.shape[2])
        slab[ks, ys, xs] = img.reshape(shape).mean(axis=1)
        for i, a in lesions.items():
            occupancy[i][ks, ys, xs] = a.reshape(shape).mean(axis=1)
    hbox = _headrest(slab, px, py, acq, an)
    used = [b for b in boxes if b is not None]
    y0 = min([b[0].start for b in used] + [hbox[0].start]) - 3
    y1 = max([b[0].stop for b in used] + [hbox[0].stop]) + 3
    x0 = min([b[1].start for b in used] + [hbox[1].start]) - 3
    x1 = max([b[1].stop for b in used] + [hbox[1].stop]) + 3
    return slab, occupancy, (slice(max(y0, 0), min(y1, m)), slice(max(x0, 0), min(x1, m)))


# --------------------------------------------------------------------------- public API


def sample(rng: np.random.Generator, *, positive: bool | None = None, subtypes: Sequence[str] | None = None,
           p_positive: float = 0.5, matrix: int = 512, slice_thickness: float | None = None,
           age: float | None = None, max_slices: int | None = None, bone_kernel: bool = False) -> CtHeadSample:
    """Draw one synthetic non-contrast CT head (no I/O).

    Parameters
    ----------
    rng : the only source of randomness; the same seed gives the same study.
    positive : force a study with (True) or without (False) haemorrhage; None
        draws it with probability ``p_positive``.
    subtypes : exactly these haemorrhages (RSNA names, see `SUBTYPES`), one of each.
    matrix : output rows and columns (512 as scanners write; 128 or 256 for training).
    slice_thickness : mm; None draws 2.5-5 mm. 0.625-1.25 mm gives a thin series.
    age : years (None draws an adult stroke/trauma population, 18-96).
    max_slices : cover at most this many slices, centred on the brain (small tests).
    bone_kernel : also reconstruct the bone-kernel twin (``bone``).

    Anatomy, acquisition, haemorrhage and noise come from four independent
    streams, so forcing ``positive`` changes only the haemorrhage: the same
    seed with and without it differs only in and near the blood.
    """
    return _sample(rng, positive=positive, subtypes=subtypes, p_positive=p_positive, matrix=matrix,
                   slice_thickness=slice_thickness, age=age, max_slices=max_slices, bone_kernel=bone_kernel)[0]


def _sample(rng: np.random.Generator, *, positive, subtypes, p_positive, matrix, slice_thickness, age,
            max_slices, bone_kernel) -> tuple[CtHeadSample, _Anatomy, _Acquisition]:
    if matrix < 64:
        raise ValueError("matrix must be at least 64")
    seeds = rng.integers(0, 2**63 - 1, size=4)
    r_anat, r_acq, r_bleed, r_noise = (np.random.default_rng(int(s)) for s in seeds)
    if age is None:
        age = float(np.clip(r_anat.normal(64, 17), 18, 96))
    an = _draw_anatomy(r_anat, float(age))
    acq = _draw_acquisition(r_acq, an, matrix, slice_thickness, max_slices)
    bleeds = _draw_bleeds(r_bleed, an, positive, subtypes, p_positive)
    factor = 2 if acq.pixel < 0.6 and matrix % 2 == 0 else 1
    slab, occupancy, hbox = _render_slices(an, acq, bleeds, factor)
    noise_map = _noise_map(acq, an)
    hu = _reconstruct(r_noise, slab, acq, factor, hbox, noise_map, psf_mm=acq.psf_mm, noise_sd=acq.noise_sd,
                      fc=0.42)
    bone = None
    if bone_kernel:
        bone = _reconstruct(np.random.default_rng(int(seeds[3]) + 1), slab, acq, factor, hbox, noise_map,
                            psf_mm=0.25, noise_sd=acq.noise_sd * 3.2, fc=0.9, sharpen=0.8)
    labels, truth_bleeds = _bleed_truth(bleeds, _occupancy_blocks(occupancy, factor), acq, an.scale)
    truth = _truth(an, acq, bleeds, truth_bleeds, acq.n_slices)
    smp = CtHeadSample(hu=hu, spacing=(acq.thickness, acq.pixel, acq.pixel), origin=acq.origin,
                       slice_thickness=acq.thickness, labels=labels, truth=truth, bone=bone)
    return smp, an, acq


def _noise_map(acq: _Acquisition, an: _Anatomy) -> tuple[np.ndarray, np.ndarray]:
    """Relative noise SD: in-plane (higher through the centre of the head) and per slice (posterior fossa)."""
    m = acq.matrix
    y = acq.origin[1] + acq.pixel * np.arange(m)
    x = acq.origin[0] + acq.pixel * np.arange(m)
    r2 = (x[None, :] - acq.centre[0]) ** 2 + (y[:, None] - acq.centre[1]) ** 2
    central = 1 + 0.25 * np.exp(-r2 / (2 * 45.0**2))
    z = acq.origin[2] + acq.thickness * np.arange(acq.n_slices)
    zh = (z - acq.centre[2]) / an.scale[2]
    low = 1 + 0.4 * np.clip((-30 - zh) / 25, 0, 1)
    return central.astype(F32), low.astype(F32)


def _occupancy_blocks(occupancy: list[np.ndarray], factor: int):
    """Each bleed's occupancy on the output grid, as (box, block) around where it is non-zero."""
    blocks = []
    for occ in occupancy:
        nz = [np.flatnonzero(occ.any(axis=ax)) for ax in ((1, 2), (0, 2), (0, 1))]
        if any(len(v) == 0 for v in nz):
            blocks.append(None)
            continue
        lo = [max(int(v[0]) - 1, 0) for v in nz]
        hi = [min(int(v[-1]) + 2, n) for v, n in zip(nz, occ.shape)]
        block = occ[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]]
        if factor == 2:
            block = _upsample2(block)
        box = (slice(lo[0], hi[0]), slice(lo[1] * factor, hi[1] * factor), slice(lo[2] * factor, hi[2] * factor))
        blocks.append((box, block))
    return blocks


def _bleed_truth(bleeds: Sequence[_Bleed], blocks, acq: _Acquisition, scale: Sequence[float]):
    """Label volume and per-bleed truth (slices, centre, volume) from the occupancy blocks."""
    voxel_ml = acq.thickness * acq.pixel * acq.pixel / 1000.0
    labels = np.zeros((acq.n_slices, acq.matrix, acq.matrix), np.uint8)
    best = np.zeros(labels.shape, F32)
    out = []
    for b, item in zip(bleeds, blocks):
        entry: dict[str, Any] = dict(subtype=b.subtype, location=b.location, side=b.side,
                                     density_hu=round(b.density, 1), volume_ml=0.0, slices=[])
        if b.subtype in ("subdural", "epidural"):
            entry["max_thickness_mm"] = round(b.geom["t_max"] * float(np.mean(scale)), 1)
        out.append(entry)
        if item is None:
            continue
        box, occ = item
        z0, y0, x0 = box[0].start, box[1].start, box[2].start
        mask = (occ >= 0.5) & (occ > best[box])
        labels[box][mask] = SUBTYPE_CODE[b.subtype]
        np.maximum(best[box], occ, out=best[box])
        per_slice = occ.sum(axis=(1, 2), dtype=np.float64) * voxel_ml
        entry["volume_ml"] = round(float(per_slice.sum()), 2)
        entry["slices"] = [int(z0 + k) for k in np.flatnonzero(per_slice >= SLICE_MIN_ML)]
        zz, yy, xx = np.nonzero(occ > 0.05)
        if len(zz) == 0:
            continue
        wts = occ[zz, yy, xx]
        cz, cy, cx = (float(np.average(v, weights=wts)) for v in (zz, yy, xx))
        cand = np.flatnonzero(occ.ravel() >= min(0.5, float(occ.max()) * 0.9))
        cz_, cy_, cx_ = np.unravel_index(cand, occ.shape)
        d2 = ((cz_ - cz) * acq.thickness) ** 2 + ((cy_ - cy) * acq.pixel) ** 2 + ((cx_ - cx) * acq.pixel) ** 2
        k = int(np.argmin(d2))
        v = (int(z0 + cz_[k]), int(y0 + cy_[k]), int(x0 + cx_[k]))
        entry["centre_voxel"] = list(v)
        entry["centre_mm"] = [round(acq.origin[0] + v[2] * acq.pixel, 2), round(acq.origin[1] + v[1] * acq.pixel, 2),
                              round(acq.origin[2] + v[0] * acq.thickness, 2)]
        entry["centroid_mm"] = [round(acq.origin[0] + (x0 + cx) * acq.pixel, 2),
                                round(acq.origin[1] + (y0 + cy) * acq.pixel, 2),
                                round(acq.origin[2] + (z0 + cz) * acq.thickness, 2)]
    return labels, out


def _truth(an: _Anatomy, acq: _Acquisition, bleeds, truth_bleeds, n_slices: int) -> dict[str, Any]:
    slice_labels: dict[str, list[int]] = {s: [] for s in SUBTYPES}
    for t in truth_bleeds:
        slice_labels[t["subtype"]] = sorted(set(slice_labels[t["subtype"]]) | set(t["slices"]))
    any_slices = sorted({k for t in truth_bleeds for k in t["slices"]})
    return {
        "present": bool(truth_bleeds),
        "subtypes": sorted({t["subtype"] for t in truth_bleeds}),
        "haemorrhages": truth_bleeds,
        "slice_labels": {"any": any_slices, **slice_labels},
        "n_slices": n_slices,
        "slice_thickness_mm": acq.thickness,
        "pixel_spacing_mm": round(acq.pixel, 6),
        "matrix": acq.matrix,
        "age_years": round(an.age, 1),
        "head": {"scale": [round(v, 3) for v in an.scale], "rotation_deg": [round(v, 2) for v in acq.rotation_deg],
                 "ventricle_scale": round(an.vent, 3), "atrophy": round(an.atrophy, 3),
                 "calcifications": sorted({c[0] for c in an.calcs}),
                 "scalp_haematoma": an.scalp_haematoma is not None},
        "noise_sd_hu": round(acq.noise_sd, 2),
        "acquisition": {"kvp": acq.kvp, "mas": round(acq.mas, 1), "ma": round(acq.mas, 1),
                        "ctdi_vol_mgy": round(acq.ctdi_vol, 2),
                        "dlp_mgycm": round(acq.ctdi_vol * acq.n_slices * acq.thickness / 10, 1),
                        "fov_mm": round(acq.fov, 2), "psf_mm": round(acq.psf_mm, 3)},
        "midline_shift_mm": round(max([b.geom.get("shift", 0.0) for b in bleeds] or [0.0]), 1),
    }


# --------------------------------------------------------------------------- localizer


def _localizer(an: _Anatomy, acq: _Acquisition) -> tuple[np.ndarray, tuple[float, float, float], float]:
    """A lateral scout: the line integral of attenuation across the head and neck.

    Returns (image rows = z from the top down, columns = y from anterior), the
    patient position (x, y, z) of its first pixel and its pixel spacing (mm).
    """
    step = 2.0
    sc = np.array(an.scale)
    top = acq.centre[2] + (C_UP + 25) * sc[2]
    zs = np.arange(top - 250, top, step)
    ys = acq.centre[1] + np.arange(-128, 128, step)
    xs = acq.centre[0] + np.arange(-96, 96, step)
    grid = _Grid(xs, ys, zs, (step, step, step), acq, an.scale)
    img, _ = _render(grid, an, (), step / float(np.mean(sc)), detail=False)
    mu = np.maximum(img + F32(1000), F32(0)) * F32(0.019 / 1000 * step)  # water ~0.019/mm at ~70 keV
    proj = mu.sum(axis=2)[::-1]  # (z from the top, y)
    proj = _upsample2(proj[None].astype(F32))[0]
    scaled = proj / max(float(proj.max()), 1e-6) * 3000.0 - 1024.0
    origin = (float(acq.centre[0]), float(ys[0] - step / 4), float(zs[-1] + step / 4))
    return scaled.astype(F32), origin, step / 2


# --------------------------------------------------------------------------- DICOM study

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
             identity: StudyIdentity | None = None) -> dict[str, Any]:
    """Write one synthetic CT head study under ``folder`` and return its truth.

    Series 1 is a lateral localizer (ImageType ORIGINAL/PRIMARY/LOCALIZER),
    series 2 the soft-tissue (brain) kernel axial series the models read,
    series 3 its bone-kernel twin (same slices and frame of reference, wider
    window). Files are named ``<series:03d>_<instance:04d>.dcm``.
    """
    folder = Path(folder)
    age = float(np.clip(rng.normal(64, 17), 18, 96))
    description = str(STUDY_DESCRIPTIONS[int(rng.integers(len(STUDY_DESCRIPTIONS)))])
    study = make_study(rng, index, description, age_years=(age, age), identity=identity)
    smp, an, acq_ = _sample(rng, positive=positive, subtypes=subtypes, p_positive=0.5, matrix=matrix,
                            slice_thickness=None, age=age, max_slices=None, bone_kernel=True)
    acq = smp.truth["acquisition"]
    names = _series_names(study, smp.slice_thickness)
    frame = study.new_uid(rng)
    common = {"FrameOfReferenceUID": frame, "ReconstructionDiameter": round(acq["fov_mm"], 1),
              "DataCollectionDiameter": 500.0, "AcquisitionNumber": 1, "XRayTubeCurrent": int(acq["ma"]),
              "ExposureTime": 1000, "FilterType": "HEAD FILTER"}
    base = dict(protocol=names["protocol"], body_part="HEAD", kvp=acq["kvp"], exposure_mas=acq["mas"])

    scout, scout_origin, scout_px = _localizer(an, acq_)
    loc = CtSeries(number=1, description=names["scout"][0], kernel=names["scout"][1],
                   image_type=("ORIGINAL", "PRIMARY", "LOCALIZER"), ctdi_vol=0.12, exposure_mas=35.0,
                   window_center=476.0, window_width=3000.0,
                   extra={**common, "ImageOrientationPatient": [0, 1, 0, 0, 0, -1], "RescaleType": "US"}, **{
                       k: v for k, v in base.items() if k != "exposure_mas"})
    write_ct_series(folder, rng, study, loc, scout[None], (scout_px, scout_px, scout_px), scout_origin,
                    slice_thickness=0.6)
    series = [("localizer", loc, 1)]
    for number, role, (desc, kernel, wc, ww), pixels in ((2, "main", names["main"], smp.hu),
                                                         (3, "bone", names["bone"], smp.bone)):
        s = CtSeries(number=number, description=desc, kernel=kernel, ctdi_vol=acq["ctdi_vol_mgy"],
                     window_center=float(wc), window_width=float(ww), extra=common, **base)
        write_ct_series(folder, rng, study, s, pixels, smp.spacing, smp.origin, slice_thickness=smp.slice_thickness)
        series.append((role, s, pixels.shape[0]))
    truth = dict(smp.truth)
    truth.update(
        main_series_number=2,
        series=[{"number": s.number, "role": role, "description": s.description, "kernel": s.kernel,
                 "image_type": list(s.image_type), "images": n} for role, s, n in series],
        study_description=description, manufacturer=study.manufacturer, model=study.model,
        patient_sex=study.patient.sex,
    )
    return truth
