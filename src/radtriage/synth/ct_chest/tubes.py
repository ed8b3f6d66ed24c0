"""Tubes: the mediastinal vessels and airways, and trees grown into the lungs."""

from __future__ import annotations


import numpy as np

from radtriage.synth.ct_chest.body import _lung_extent, _u, Body, Tubes


def _polyline(points, radii) -> Tubes:
    p = np.asarray(points, float)
    r = np.asarray(radii, float)
    return Tubes(p[:-1], p[1:], r[:-1], r[1:])


def _mediastinal_tubes(rng: np.random.Generator, body: Body) -> tuple[Tubes, Tubes, dict]:
    """Great vessels (blood) and trachea/main bronchi (air): (blood tubes, airway centre tubes, landmarks).

    Tubes that leave the chest run well past any scan range (rasterising clips them)."""
    _, b_c = body.cavity
    top, bottom = body.apex_z + 150, _lung_extent(body)[0] - 150
    xm, hw_up, _, _ = body.mediastinum
    hx, hy, hz = body.heart[:3]
    yv = b_c - 0.15 * body.spine[0]
    rv = body.spine[0]
    j = lambda s=3.0: rng.normal(0, s, 3)  # noqa: E731
    r_asc = _u(rng, 13, 17)
    r_desc = _u(rng, 10, 13)
    y_desc = yv - rv * 0.6
    arch_z = _u(rng, 22, 38)
    asc = [np.array([hx - 12, hy - 5, hz + 20]), np.array([xm - 18, -0.25 * b_c, hz + 60]) + j(),
           np.array([xm - 14, -0.22 * b_c, arch_z - 10]) + j(), np.array([xm - 4, -0.05 * b_c, arch_z + 2]),
           np.array([xm + 14, 0.3 * b_c, arch_z]), np.array([xm + 20, y_desc - 12, arch_z - 18])]
    desc = [asc[-1], np.array([xm + 22, y_desc, -30.0]) + j(2), np.array([xm + 16, y_desc + 2, -120.0]) + j(2),
            np.array([xm + 6, y_desc + 4, bottom - 20])]
    blood = [_polyline(asc, [r_asc, r_asc, r_asc, r_asc - 1, r_desc + 1, r_desc]),
             _polyline(desc, [r_desc, r_desc, r_desc - 0.5, r_desc - 1])]
    # arch branches up to the top of the scan
    for dx, r, lat in ((-8, 6.5, -22), (3, 4.5, 8), (13, 5.0, 40)):
        p0 = np.array([xm + dx, -0.05 * b_c + dx * 0.5, arch_z + 8])
        blood.append(_polyline([p0, p0 + [lat * 0.4, 5, 25] + j(2), p0 + [lat, 10, top - arch_z + 10]],
                               [r, r - 0.5, r - 1]))
    # SVC and brachiocephalic veins, IVC
    r_svc = _u(rng, 8, 11)
    svc = [np.array([xm - 30, -0.05 * b_c, top + 10]), np.array([xm - 32, -0.08 * b_c, arch_z]) + j(2),
           np.array([xm - 28, -0.05 * b_c, hz + 35])]
    blood.append(_polyline(svc, [r_svc, r_svc, r_svc]))
    blood.append(_polyline([[xm + 45, -0.3 * b_c, top + 10], [xm + 20, -0.3 * b_c, arch_z + 22],
                            [xm - 28, -0.1 * b_c, arch_z + 12]], [6, 6, 7]))
    blood.append(_polyline([[hx - 30, hy + 25, hz - 10], [xm - 18, 0.15 * b_c, bottom - 20]], [12, 12]))
    # pulmonary trunk and arteries to the hila
    pa_fork = np.array([xm + 6, -0.05 * b_c, _u(rng, -30, -18)])
    hila = {"R": np.array([xm - hw_up - _u(rng, 14, 22), 0.05 * b_c, _u(rng, -32, -20)]),
            "L": np.array([xm + hw_up + _u(rng, 14, 22), 0.1 * b_c, _u(rng, -22, -10)])}
    r_pa = _u(rng, 12, 15)
    blood.append(_polyline([[hx - 5, hy - 15, hz + 25], pa_fork], [r_pa, r_pa]))
    for side in "RL":
        mid = 0.5 * (pa_fork + hila[side]) + [0, 8 if side == "R" else 14, 6 if side == "L" else 0]
        blood.append(_polyline([pa_fork, mid, hila[side]], [10.5, 10, 9.5]))
    # oesophagus (soft tissue, like blood on non-contrast CT)
    oes = [np.array([xm - 2, yv - rv - 10, top + 10]), np.array([xm + 4, yv - rv - 12, -40]) + j(2),
           np.array([xm + 12, yv - rv - 20, bottom])]
    blood.append(_polyline(oes, [8, 8, 8]))
    # trachea, carina, main bronchi (centre lines; the lumen radius is r, the wall is added later)
    y_tr = yv - rv - 26
    r_tr = _u(rng, 8, 10.5)
    carina = np.array([xm, y_tr + 4, 0.0])
    bronchi = {"R": np.array([hila["R"][0] + 18, hila["R"][1] + 6, hila["R"][2] + 2]),
               "L": np.array([hila["L"][0] - 14, hila["L"][1] + 10, hila["L"][2] - 16])}
    air = [_polyline([[xm, y_tr - 4, top + 10], [xm + 2, y_tr, 40], carina + [0, 0, 8]], [r_tr, r_tr, r_tr])]
    r_main = {"R": 0.65 * r_tr, "L": 0.6 * r_tr}
    air.append(_polyline([carina + [0, 0, 6], bronchi["R"]], [0.7 * r_tr, r_main["R"]]))
    air.append(_polyline([carina + [0, 0, 6], bronchi["L"]], [0.65 * r_tr, r_main["L"]]))
    marks = {"hila": hila, "bronchi": bronchi, "bronchus_r": r_main,
             "atrium": np.array([hx - 5, hy + 0.5 * body.heart[4], hz + 10])}
    return Tubes.cat(blood), Tubes.cat(air), marks


def _grow_tree(rng: np.random.Generator, root: np.ndarray, pts: np.ndarray, r_root: float, *,
               lam: float = 0.42, exponent: float = 2.8, min_len: float = 1.0):
    """Space-filling branching tree (recursive domain splitting, vectorised by generation).

    Returns (start, end, radius, end radius, parent index, direction, generation) arrays, one row
    per branch; parents come before their children.
    """
    M = len(pts)
    lab = np.zeros(M, np.int64)
    P = pts
    start = root[None, :].astype(float)
    first = pts.mean(0) - root
    pnorm = np.cross(first, rng.normal(size=3))[None, :]
    pnorm /= np.linalg.norm(pnorm, axis=1, keepdims=True)
    parent = np.array([-1])
    out = []
    n_done = 0
    for _ in range(60):
        B = len(start)
        cnt = np.bincount(lab, minlength=B).astype(float)
        cen = np.stack([np.bincount(lab, weights=P[:, k], minlength=B) for k in range(3)], 1) / cnt[:, None]
        vec = cen - start
        dist = np.linalg.norm(vec, axis=1)
        dirs = vec / np.maximum(dist, 1e-6)[:, None]
        term = (cnt <= 1) | (dist < 1.5)
        L = np.maximum(np.where(term, dist, lam * dist), min_len)
        end = start + dirs * L[:, None]
        r = r_root * (cnt / M) ** (1 / exponent)
        out.append((start, end, r, np.where(term, 0.6 * r, r), parent, dirs, np.full(B, len(out))))
        gid = n_done + np.arange(B)
        n_done += B
        nt = ~term
        if not nt.any():
            break
        # branching plane normal: perpendicular to the parent's plane, jittered about the axis
        n = np.cross(dirs, pnorm)
        bad = np.linalg.norm(n, axis=1) < 1e-3
        if bad.any():
            n[bad] = np.cross(dirs[bad], rng.normal(size=(int(bad.sum()), 3)))
        n /= np.linalg.norm(n, axis=1, keepdims=True)
        ang = rng.uniform(-0.6, 0.6, B)[:, None]
        n = np.cos(ang) * n + np.sin(ang) * np.cross(dirs, n)
        keep = nt[lab]
        P, lab = P[keep], lab[keep]
        side = (np.einsum("ij,ij->i", P - end[lab], n[lab]) > 0).astype(np.int64)
        rank = np.cumsum(nt) - 1
        child = 2 * rank[lab] + side
        nnt = int(nt.sum())
        present = np.bincount(child, minlength=2 * nnt) > 0
        remap = np.cumsum(present) - 1
        lab = remap[child]
        parent_b = np.nonzero(nt)[0][(np.arange(2 * nnt) // 2)[present]]
        start, pnorm, parent = end[parent_b], n[parent_b], gid[parent_b]
    return [np.concatenate([o[i] for o in out]) for i in range(7)]


def _airways_along(rng: np.random.Generator, tree, r_min: float) -> tuple[Tubes, np.ndarray]:
    """Bronchi beside the arteries (broncho-arterial ratio ~0.7): lumen tubes and wall thickness."""
    start, end, r, _, parent, dirs, gen = tree
    n = len(r)
    off = np.zeros((n, 3))
    seed = np.cross(dirs[0], [0.0, 0.0, 1.0]) + 1e-3
    off[0] = seed / np.linalg.norm(seed)
    for g in range(1, int(gen.max()) + 1):  # the side a bronchus runs on follows its parent's
        sel = np.flatnonzero(gen == g)
        o = off[parent[sel]]
        o = o - np.einsum("ij,ij->i", o, dirs[sel])[:, None] * dirs[sel]
        nn = np.linalg.norm(o, axis=1, keepdims=True)
        off[sel] = np.where(nn > 1e-6, o / np.maximum(nn, 1e-6), off[parent[sel]])
    r_in = 0.7 * r * rng.uniform(0.9, 1.1, n)
    wall = 0.3 * r_in + 0.25
    sel = r_in >= r_min
    gap = (r + r_in + wall + 0.4)[:, None]
    o_start = np.where((parent >= 0)[:, None], off[np.maximum(parent, 0)], off)
    a = start + o_start * gap
    b = end + off * gap
    return Tubes(a[sel], b[sel], r_in[sel], r_in[sel]), wall[sel]

