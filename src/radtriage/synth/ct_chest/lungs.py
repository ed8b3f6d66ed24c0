"""The lung map, the trees grown in it, and nodules placed among them."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from radtriage.synth.ct_chest.body import (
    _TYPE_D, _TYPE_P, NODULE_TYPES, Body, Nodule, Scan, Tubes, _lung_extent, _psf, _u,
)
from radtriage.synth.ct_chest.plane import _Plane
from radtriage.synth.ct_chest.raster import _capsules
from radtriage.synth.ct_chest.tubes import _airways_along, _grow_tree


@dataclass(frozen=True)
class _LungMap:
    """Lungs on a coarse body-frame grid: depth below the pleura (mm), side labels."""

    origin: np.ndarray  # body-frame (Z, Y, X) of index 0
    step: float
    depth: np.ndarray  # (nz, ny, nx) mm, 0 outside
    side: np.ndarray  # 0 outside, 1 right, 2 left

    def lookup(self, p: np.ndarray, field: np.ndarray) -> np.ndarray:
        """``p`` body-frame (..., 3) as (X, Y, Z)."""
        idx = np.rint((p[..., ::-1] - self.origin) / self.step).astype(np.int64)
        idx = np.clip(idx, 0, np.array(field.shape) - 1)
        return field[idx[..., 0], idx[..., 1], idx[..., 2]]

    def points(self, rng: np.random.Generator, side: int, n: int, min_depth: float) -> np.ndarray:
        cand = np.flatnonzero((self.side.reshape(-1) == side) & (self.depth.reshape(-1) >= min_depth))
        pick = cand[rng.integers(0, len(cand), n)]
        zyx = np.stack(np.unravel_index(pick, self.depth.shape), 1) * self.step + self.origin
        zyx = zyx + rng.uniform(-0.5, 0.5, zyx.shape) * self.step
        return zyx[:, ::-1].copy()


def _lung_map(body: Body, blood: Tubes, air: Tubes, step: float = 3.5) -> _LungMap:
    a_c, b_c = body.cavity
    lo, hi = _lung_extent(body)
    zs = np.arange(lo - 6, hi + 6, step)
    ys = np.arange(-b_c - 6, b_c + 6, step)
    xs = np.arange(-a_c - 6, a_c + 6, step)
    X, Y = np.meshgrid(xs.astype(np.float32), ys.astype(np.float32))
    plane = _Plane(body, X, Y, X, Y, 1.0, 1.0, None)
    lung = plane.slab(zs, lung_only=True)
    origin = np.array([zs[0], ys[0], xs[0]])
    out = np.zeros(lung.shape, np.float32)
    tubes = Tubes.cat([blood, Tubes(air.a, air.b, air.r0 + 2.5, air.r1 + 2.5)])
    va = (tubes.a[:, ::-1] - origin) / step
    vb = (tubes.b[:, ::-1] - origin) / step
    _capsules(out, va, vb, tubes.r0 + 1.5, tubes.r1 + 1.5, (step,) * 3, (1.0,) * 3)
    mask = (lung > 0.5) & (out < 0.5)
    depth = ndimage.distance_transform_edt(mask, sampling=step).astype(np.float32)
    side = np.where(mask, np.where(X[None] < body.mediastinum[0], 1, 2), 0).astype(np.int8)
    return _LungMap(origin=origin, step=step, depth=depth, side=side)


def _lung_trees(rng: np.random.Generator, lmap: _LungMap, marks: dict,
                n_points: int = 4000) -> tuple[Tubes, Tubes, np.ndarray]:
    """Pulmonary arteries and veins (blood) and bronchi (lumen tubes, wall thickness) for both lungs."""
    blood, air, walls = [], [], []
    for code, side in ((1, "R"), (2, "L")):
        sgn = -1 if side == "R" else 1
        hilum = marks["hila"][side]
        pts = lmap.points(rng, code, n_points, 4.0)
        art = _grow_tree(rng, hilum, pts, _u(rng, 8.5, 10.5))
        blood.append(Tubes(art[0], art[1], art[2], art[3]))
        aw, wall = _airways_along(rng, art, 1.0)
        # bronchi stay in the lung (a branch aimed across the heart keeps its artery, not its airway)
        inside = (lmap.lookup(aw.a, lmap.side) > 0) | (lmap.lookup(aw.b, lmap.side) > 0)
        near = np.linalg.norm(aw.a - hilum, axis=1) < 15
        keep = inside | near
        keep[0] = True
        aw, wall = aw.take(keep), wall[keep]
        # main bronchus end joins the first airway node
        air.append(Tubes(np.array([marks["bronchi"][side]]), aw.a[:1], np.array([marks["bronchus_r"][side]]),
                         aw.r0[:1]))
        walls.append(np.array([1.8]))
        air.append(aw)
        walls.append(wall)
        for vz in (10.0, -18.0):  # superior and inferior pulmonary veins
            root = marks["atrium"] + np.array([sgn * 28.0, 8.0, vz])
            vpts = lmap.points(rng, code, n_points // 2, 4.0)
            vpts = vpts[(vpts[:, 2] > root[2]) == (vz > 0)] if len(vpts) > 50 else vpts
            if len(vpts) < 20:
                continue
            vein = _grow_tree(rng, root, vpts, _u(rng, 6.0, 7.5))
            blood.append(Tubes(vein[0], vein[1], vein[2], vein[3]))
    return Tubes.cat(blood), Tubes.cat(air), np.concatenate(walls)


def _seg_distance(p: np.ndarray, t: Tubes) -> np.ndarray:
    """Distance (C, S) from points to tube surfaces (negative inside)."""
    d = t.b - t.a
    dd = np.maximum((d * d).sum(1), 1e-9)
    w = p[:, None, :] - t.a[None]
    s = np.clip((w * d[None]).sum(2) / dd[None], 0, 1)
    q = w - s[..., None] * d[None]
    return np.linalg.norm(q, axis=2) - (t.r0 + s * (t.r1 - t.r0))


def _draw_nodules(rng: np.random.Generator, lmap: _LungMap, big: Tubes, n: int, kinds, diameter,
                  z_range: tuple[float, float]) -> list[Nodule]:
    nodules: list[Nodule] = []
    kinds = tuple(kinds) if kinds else NODULE_TYPES
    for k in kinds:
        if k not in NODULE_TYPES:
            raise ValueError(f"nodule type {k!r} is not one of {NODULE_TYPES}")
    p = np.array([_TYPE_P[NODULE_TYPES.index(k)] for k in kinds])
    zz = np.arange(lmap.depth.shape[0]) * lmap.step + lmap.origin[0]
    for _ in range(n):
        kind = str(rng.choice(kinds, p=p / p.sum()))
        lo, hi = _TYPE_D[kind]
        if diameter is not None:
            lo, hi = max(float(diameter[0]), 2.0), max(float(diameter[1]), float(diameter[0]))
        for _ in range(8):
            d = float(np.exp(rng.uniform(math.log(lo), math.log(hi))))
            R = d / 2
            juxta = rng.random() < (0.2 if kind in ("solid", "calcified") else 0.08)
            zok = ((zz > z_range[0] + R + 2) & (zz < z_range[1] - R - 2))[:, None, None]
            if juxta:
                ok = (lmap.depth >= max(0.5 * R, 1.5)) & (lmap.depth <= max(R, 3.0)) & zok
            else:
                ok = (lmap.depth >= R + 4) & zok
            cand = np.flatnonzero(ok.reshape(-1))
            if len(cand) == 0:
                hi = max(lo, 0.7 * hi)
                continue
            pick = cand[rng.integers(0, len(cand), 64)]
            c = (np.stack(np.unravel_index(pick, lmap.depth.shape), 1) * lmap.step + lmap.origin)[:, ::-1]
            c = c + rng.uniform(-0.5, 0.5, c.shape) * lmap.step
            good = np.ones(len(c), bool)
            if len(big.r0):
                good &= (_seg_distance(c, big) > R + 1.5).all(1)
            for other in nodules:
                good &= np.linalg.norm(c - other.centre, axis=1) > R + other.diameter / 2 + 6
            if good.any():
                centre = c[np.argmax(good)]
                break
        else:
            continue
        nodules.append(_make_nodule(rng, kind, centre, d, juxta, "right" if lmap.lookup(centre, lmap.side) == 1
                                    else "left"))
    return nodules


def _make_nodule(rng, kind, centre, d, juxta, side) -> Nodule:
    R = d / 2
    hu = {"solid": _u(rng, 10, 60), "part-solid": _u(rng, -620, -420), "ground-glass": _u(rng, -650, -400),
          "calcified": _u(rng, 250, 900)}[kind]
    lobes = [(0.0, 0.0, 0.0, R)]
    spicules = []
    margin = "smooth"
    if kind != "calcified" and d >= 6 and rng.random() < 0.45:
        margin = "lobulated"
        for _ in range(int(rng.integers(2, 5))):
            u = rng.normal(size=3)
            u /= np.linalg.norm(u)
            rl = R * _u(rng, 0.35, 0.6)
            c = u * (R - 0.3 * rl)
            lobes.append((float(c[0]), float(c[1]), float(c[2]), rl))
    if kind == "solid" and d >= 8 and rng.random() < 0.3:
        margin = "spiculated"
        for _ in range(int(rng.integers(5, 12))):
            u = rng.normal(size=3)
            u /= np.linalg.norm(u)
            spicules.append((float(u[0]), float(u[1]), float(u[2]), R * _u(rng, 1.3, 2.0), _u(rng, 0.3, 0.6)))
    core = None
    if kind == "part-solid":
        rc = R * _u(rng, 0.25, 0.65)
        off = rng.normal(size=3)
        off = off / np.linalg.norm(off) * _u(rng, 0, 0.6) * (R - rc)
        core = (float(off[0]), float(off[1]), float(off[2]), rc, _u(rng, 10, 60))
    return Nodule(kind=kind, centre=tuple(float(v) for v in centre), diameter=d, hu=hu, lobes=tuple(lobes),
                  spicules=tuple(spicules), core=core, margin=margin, juxtapleural=bool(juxta), side=side)


def _nodule_distance(nod: Nodule, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Signed distance (mm) to the nodule surface at body-frame offsets ``q`` (..., 3) and the
    squared z share of the direction to the nearest member (for the partial-volume width)."""
    q = q.astype(np.float32)
    best = np.full(q.shape[:-1], np.inf, np.float32)
    ez = np.zeros(q.shape[:-1], np.float32)

    def take(w, r):
        n2 = (w * w).sum(-1) + np.float32(1e-9)
        d = np.sqrt(n2) - r
        upd = d < best
        np.copyto(best, d, where=upd)
        np.copyto(ez, w[..., 2] ** 2 / n2, where=upd)

    for dx, dy, dz, r in nod.lobes:
        take(q - np.array([dx, dy, dz], np.float32), np.float32(r))
    for ux, uy, uz, length, r in nod.spicules:
        u = np.array([ux, uy, uz], np.float32)
        s = np.clip(q @ u, 0, length)
        take(q - s[..., None] * u, (r * (1 - 0.6 * s / length)).astype(np.float32))
    return best, ez


def nodule_volume(nod: Nodule) -> float:
    """Volume (mm^3) of the nodule shape (all of it, spicules included), on a fine lattice."""
    R = max(max(np.linalg.norm(lb[:3]) + lb[3] for lb in nod.lobes),
            max((s[3] for s in nod.spicules), default=0.0))
    h = max(nod.diameter / 28, 0.1)
    ax = np.arange(-R - h, R + h, h) + h / 2
    q = np.stack(np.meshgrid(ax, ax, ax, indexing="ij"), -1)
    d, _ = _nodule_distance(nod, q)
    return float((d < 0).sum() * h ** 3)


def _nodule_patch(nod: Nodule, scan: Scan, rng: np.random.Generator):
    """(slices, outer fraction, outer HU, core fraction or None) for one nodule, full resolution."""
    R = max(max(np.linalg.norm(lb[:3]) + lb[3] for lb in nod.lobes),
            max((s[3] for s in nod.spicules), default=0.0)) + 2 * scan.thickness
    c = scan.to_voxel(np.array(nod.centre))
    half = np.array([R / scan.dz, R / scan.pixel, R / scan.pixel])
    lo = np.maximum(np.floor(c - half).astype(int), 0)
    hi = np.minimum(np.ceil(c + half).astype(int) + 1, scan.shape)
    if (hi <= lo).any():
        return None
    kk, ii, jj = (np.arange(lo[k], hi[k]) for k in range(3))
    x0, y0, z0 = scan.origin
    xp = (x0 + jj * scan.pixel)[None, None, :]
    yp = (y0 + ii * scan.pixel)[None, :, None]
    zp = (z0 + kk * scan.dz)[:, None, None]
    X, Y, Z = scan.to_body(xp, yp, zp)
    X, Y, Z = np.broadcast_arrays(X, Y, Z)
    q = np.stack([X - nod.centre[0], Y - nod.centre[1], Z - nod.centre[2]], -1)
    d, ez = _nodule_distance(nod, q)
    pxe2 = scan.pixel ** 2 + _psf(scan) ** 2
    w = np.sqrt(ez * scan.thickness ** 2 + (1 - ez) * pxe2)
    f = np.clip(-d / w + 0.5, 0, 1)
    hu = np.full(f.shape, nod.hu, np.float32)
    if nod.kind in ("ground-glass", "part-solid"):
        tex = ndimage.gaussian_filter(rng.standard_normal(f.shape), (0.6, 1.5, 1.5))
        hu = hu + (40 / max(tex.std(), 1e-6)) * tex.astype(np.float32)
    core = None
    if nod.core is not None:
        cx, cy, cz, rc, chu = nod.core
        wq = q - [cx, cy, cz]
        n = np.linalg.norm(wq, axis=-1)
        ezc = np.abs(wq[..., 2]) / np.maximum(n, 1e-6)
        wc = np.sqrt(ezc ** 2 * scan.thickness ** 2 + (1 - ezc ** 2) * pxe2)
        core = (np.clip((rc - n) / wc + 0.5, 0, 1).astype(np.float32), chu)
    sl = tuple(slice(int(lo[k]), int(hi[k])) for k in range(3))
    return sl, f.astype(np.float32), hu, core

