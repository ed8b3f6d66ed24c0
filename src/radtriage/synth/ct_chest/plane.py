"""Static anatomy on one axial plane: chest wall, ribs, spine, mediastinum, heart, lungs, diaphragm, table."""

from __future__ import annotations

import math

import numpy as np

from radtriage.synth.ct_chest.body import Body, _back


def _ramp(d, w):
    return np.clip(d / w + 0.5, 0.0, 1.0)


def _smooth(x, lo, hi):
    t = np.clip((x - lo) / (hi - lo), 0.0, 1.0)
    return t * t * (3 - 2 * t)


def _ellipse(u, a, v, b, wu, wv):
    """Partial-volume fraction of the ellipse (u/a)^2 + (v/b)^2 < 1 and its normalised radius.

    ``wu``/``wv``: resolution (mm) along u and v. First-order signed distance
    (1 - rho) / |grad rho|, the ramp width taken along the gradient.
    """
    gu, gv = u * (1 / (a * a)), v * (1 / (b * b))
    rho = np.sqrt(u * gu + v * gv) + 1e-6
    den = np.sqrt((gu * wu) ** 2 + (gv * wv) ** 2) + 1e-9
    return np.clip((1 - rho) * rho / den + 0.5, 0.0, 1.0), rho


def _box(mask2d: np.ndarray) -> tuple[slice, slice] | None:
    rows, cols = np.nonzero(mask2d.any(axis=1))[0], np.nonzero(mask2d.any(axis=0))[0]
    if rows.size == 0:
        return None
    return slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1)


class _Plane:
    """The slowly varying anatomy on one in-plane grid (body-frame X, Y arrays)."""

    def __init__(self, body: Body, X: np.ndarray, Y: np.ndarray, Xp: np.ndarray, Yp: np.ndarray,
                 wxy: float, wz: float, table_y: float | None):
        self.b, self.X, self.Y, self.wxy, self.wz = body, X, Y, wxy, wz
        a_c, b_c = body.cavity
        t_rib, m0, m_para, m_pec, fat0 = body.wall
        h = body.hu
        f32 = np.float32
        self.r = np.hypot(X, Y).astype(f32)
        th = np.arctan2(Y, X)
        psi = self.psi = np.arctan2(np.abs(X), Y).astype(f32)  # 0 posterior, pi anterior
        ct, st = np.cos(th), np.sin(th)
        self.Re = (a_c * b_c / np.sqrt((b_c * ct) ** 2 + (a_c * st) ** 2)).astype(f32)
        # for the cavity shifted back by yc and scaled by sc: r^2 A - 2 r yc sin/b^2 + yc^2/b^2 - sc^2 = 0
        self.A = (ct * ct / a_c ** 2 + st * st / b_c ** 2).astype(f32)
        self.cs = (st / b_c ** 2).astype(f32)
        self.wall = (t_rib + m0 + m_para * np.exp(-(psi / 0.55) ** 2)).astype(f32)
        self.pec = (m_pec * np.exp(-((psi - 2.25) / 0.45) ** 2)).astype(f32)
        lateral = np.sin(psi) ** 2
        self.fat = (fat0 * (0.6 + 0.7 * lateral) * (1 - 0.35 * np.exp(-(psi / 0.6) ** 2))).astype(f32)
        self.breast = (body.breast * np.exp(-((psi - 2.3) / 0.3) ** 2)).astype(f32)
        self.flat = np.where(st > 0.05, _back(body) / np.maximum(st, 0.05), 1e4).astype(f32)
        # background: air and the table (patient coordinates: Xp, Yp)
        bg = np.full(X.shape, -1000.0, f32)
        if table_y is not None:
            tz = Yp - table_y - 0.0006 * Xp ** 2  # gently curved top
            width = _ramp(230 - np.abs(Xp), wxy)
            shell = np.clip(_ramp(1.2 - np.abs(tz - 1.5), wxy) + _ramp(1.2 - np.abs(tz - 38), wxy), 0, 1)
            bg = bg + width * (_ramp(18 - np.abs(tz - 20), wxy) * 100 + shell * (h["table"] + 1000))
        self.bg = bg.astype(f32)
        # lungs: gravity gradient (posterior denser) and a gentle texture
        dep = np.clip((Y + b_c) / (2 * b_c), 0, 1)
        tex = 6 * np.sin(X / 9.0 + 1.3) * np.sin(Y / 7.0 + 0.4) + 4 * np.sin((X + Y) / 5.0)
        self.lung = (h["lung"] + h["lung_grad"] * dep ** 2 + tex).astype(f32)
        # diaphragm domes (Z of the lung base) and their normal-direction ramp width
        k = body.dome_k
        right = X < body.mediastinum[0]
        xd = np.where(right, -0.45 * a_c, 0.45 * a_c)
        zd0 = np.where(right, body.domes_z[0], body.domes_z[1])
        yd = -0.15 * b_c
        self.zd = np.maximum(zd0 - k * ((X - xd) ** 2 + 1.3 * (Y - yd) ** 2), zd0 - 85).astype(f32)
        G = 1 / np.sqrt(1 + (2 * k * (X - xd)) ** 2 + (2.6 * k * (Y - yd)) ** 2)
        self.zd_w = (np.sqrt((G * wz) ** 2 + (1 - G * G) * wxy ** 2) / G).astype(f32)
        # lung apices: a broad dome over each lung
        ka = 0.006
        dxa, dya = np.abs(X) - 0.33 * a_c, Y - 0.35 * b_c
        drop = ka * (dxa ** 2 + dya ** 2)
        self.za = (body.apex_z - np.minimum(drop, 100)).astype(f32)  # below that the cavity shapes the lung
        ga = np.where(drop < 100, 1 / np.sqrt(1 + (2 * ka) ** 2 * (dxa ** 2 + dya ** 2)), 1.0)
        self.za_w = (np.sqrt((ga * wz) ** 2 + (1 - ga * ga) * wxy ** 2) / ga).astype(f32)
        # abdomen below the diaphragm: liver right (and left lobe in front), spleen, stomach
        liver = _ramp(a_c * (0.08 - 0.3 * Y / b_c) - X, wxy)
        spleen, _ = _ellipse(X - 0.62 * a_c, 0.28 * a_c, Y - 0.42 * b_c, 0.38 * b_c, wxy, wxy)
        stomach, _ = _ellipse(X - 0.42 * a_c, 0.33 * a_c, Y + 0.22 * b_c, 0.45 * b_c, wxy, wxy)
        gas = stomach * _ramp(-(Y + 0.22 * b_c + 0.45 * b_c - body.stomach_gas), wxy)
        abd = np.full(X.shape, 0.5 * (h["fat"] + h["muscle"]), f32)
        abd = abd + liver * (h["liver"] - abd)
        abd = abd + spleen * (1 - liver) * (h["spleen"] - abd)
        abd = abd + stomach * (1 - liver) * (h["stomach"] - abd)
        self.abd = (abd + gas * (1 - liver) * (-1000 - abd)).astype(f32)
        # mediastinum: a band, narrow in front (anterior junction), wider behind (aorta, oesophagus)
        xm, _, _, post = body.mediastinum
        self.med_dx = np.abs(X - xm).astype(f32)
        self.med_front = (0.15 + 0.85 / (1 + np.exp(-(Y + 0.3 * b_c) / 10))).astype(f32)
        self.med_post = (post * np.clip((Y - 0.15 * b_c) / 20, 0, 1)).astype(f32)
        # local structures: heart, spine, sternum boxes; the ring of the chest wall (ribs, scapulae)
        hx, hy, _, ha, hb, _, _, epi = body.heart
        rh = max(ha, hb) + epi + 6
        self.heart_box = _box((np.abs(X - hx) < rh) & (np.abs(Y - hy) < rh))
        rv = body.spine[0]
        self.spine_y = b_c - 0.15 * rv
        self.spine_box = _box((np.abs(X) < 48) & (Y > self.spine_y - rv - 4) & (Y < self.spine_y + rv + 50))
        self.sternum_box = _box((np.abs(X) < 30) & (Y < -0.6 * b_c) & (Y > -b_c - 30))
        sc_min, yc_max = self._scale(np.float32(body.apex_z + 60))
        lo = self.r - (self.cavity_radius(sc_min, yc_max) - 3)
        hi = (1.07 * self.Re + t_rib + 14) - self.r
        self.ring = np.flatnonzero(((lo > 0) & (hi > 0)).reshape(-1))

    # per-slice profiles ------------------------------------------------------------------
    def _scale(self, Z):
        """In-plane scale of the thoracic cavity and its backward shift (the inlet is small and posterior)."""
        top = np.clip((Z - (self.b.apex_z - 120)) / 140, 0, 1)
        bottom = np.clip((-Z - 40) / 100, 0, 1)
        sc = (1 - 0.45 * top ** 1.6) * (1 + 0.05 * bottom)
        return sc.astype(np.float32), ((1 - np.minimum(sc, 1)) * 0.85 * self.b.cavity[1]).astype(np.float32)

    def cavity_radius(self, sc, yc):
        """Distance from the body-frame origin to the cavity wall along each pixel's ray."""
        b2 = self.b.cavity[1] ** 2
        t = self.cs * yc
        return (t + np.sqrt(t * t - self.A * (yc * yc / b2 - sc * sc))) / self.A

    def slab(self, Z: np.ndarray, lung_only: bool = False):
        """HU (nk, ny, nx) of the static anatomy for body-frame slices ``Z`` (nk,), or (with
        ``lung_only``) the lung fraction instead."""
        b, h, wxy = self.b, self.b.hu, self.wxy
        Z = np.asarray(Z, np.float32)[:, None, None]
        sc, yc = self._scale(Z)
        r = self.r
        Rc = self.cavity_radius(sc, yc)
        f_cav = _ramp(Rc - r, wxy)
        # cavity content: lungs, neck above the apices, abdomen below the domes, mediastinum, heart
        # (the neck and abdomen terms vanish inside the cavity away from the apices and the domes)
        f_neck = _ramp(Z - self.za, self.za_w) if Z.max() > b.apex_z - 110 else None
        f_abd = _ramp(self.zd - Z, self.zd_w) if Z.min() < max(b.domes_z) + 8 else None
        _, hw_up, hw_low, _ = b.mediastinum
        hz = b.heart[2]
        hw = hw_low + (hw_up - hw_low) * _smooth(Z, hz, hz + 45)
        f_med = _ramp(hw * self.med_front + self.med_post - self.med_dx, wxy)
        if lung_only:
            lung = f_cav * (1 - f_med)
            for f in (f_neck, f_abd):
                if f is not None:
                    lung *= 1 - f
            f_heart = self._heart(Z, None)
            if f_heart is not None:
                lung[:, self.heart_box[0], self.heart_box[1]] *= 1 - f_heart
            return self._spine(Z, None, lung)
        content = self.lung + f_med * (h["med_fat"] - self.lung)
        if f_neck is not None:
            content += f_neck * (h["neck"] - content)
        self._heart(Z, content)
        if f_abd is not None:
            content += f_abd * (self.abd - content)
        # chest wall and body outline
        Rmo = Rc + self.wall + self.pec * _smooth(Z, -110, -60) + (1 - sc) * self.Re * 0.9
        breast = self.breast * np.exp(-((Z - b.heart[2] + 10) / 50) ** 2)
        Rb = np.minimum(Rmo + self.fat + breast, self.flat)
        hu = self.bg + _ramp(Rb - r, wxy) * (h["fat"] - self.bg)
        hu += _ramp(np.minimum(Rmo, Rb - 2.5) - r, wxy) * (h["muscle"] - hu)
        hu += f_cav * (content - hu)
        self._ring(Z, Rc, hu)
        self._sternum(Z, sc, yc, hu)
        self._spine(Z, hu, None)
        return hu

    def _heart(self, Z, content):
        box = self.heart_box
        if box is None:
            return None
        b, h, wxy, wz = self.b, self.b.hu, self.wxy, self.wz
        hx, hy, hz, ha, hb, hc, roll, epi = b.heart
        Xb, Yb = self.X[box], self.Y[box]
        u = math.cos(roll) * (Xb - hx) + math.sin(roll) * (Yb - hy)
        v = -math.sin(roll) * (Xb - hx) + math.cos(roll) * (Yb - hy)
        w = Z - hz
        q_in = (u / ha) ** 2 + (v / hb) ** 2 + (w / hc) ** 2
        q_out = (u / (ha + epi)) ** 2 + (v / (hb + epi)) ** 2 + (w / (hc + epi)) ** 2
        share = (w * w / (w * w + u * u + v * v + 1e-3))  # z share of the normal, roughly
        ww = np.sqrt(wxy * wxy + share * (wz * wz - wxy * wxy))
        m = min(ha, hb, hc)
        f_out = _ramp((1 - np.sqrt(q_out)) * m, ww)
        if content is not None:
            f_in = _ramp((1 - np.sqrt(q_in)) * m, ww)
            c = content[:, box[0], box[1]]
            c += f_out * (h["fat"] - c)
            c += f_in * (h["blood"] - c)
        return f_out

    def _ring(self, Z, Rc, hu):
        """Ribs, costal cartilage and scapulae, computed on the chest-wall ring only."""
        b, h, wxy, wz = self.b, self.b.hu, self.wxy, self.wz
        pitch, drop, phase, rib_h, rib_t = b.ribs
        idx = self.ring
        nk = Z.shape[0]
        psi, r = self.psi.reshape(-1)[idx], self.r.reshape(-1)[idx]
        Z1 = Z[:, :, 0]
        Rc = Rc.reshape(nk, -1)[:, idx]
        rr = r - (Rc + 1.0 + rib_t / 2)
        ph = (Z1 + drop * psi * (1 / math.pi) - phase) / pitch
        k = np.rint(ph)
        v = (ph - k) * pitch
        f, rho = _ellipse(rr, rib_t / 2, v, rib_h / 2, wxy, wz)
        k_low = math.floor((min(b.domes_z) - 60 - phase) / pitch)
        f = f * np.where(k < k_low + 2, _ramp(1.9 - psi, 0.2), 1.0)  # floating ribs stop short
        value = h["marrow"] + (h["cortex"] - h["marrow"]) * _smooth(rho, 0.5, 0.85)
        value += _smooth(psi, 2.45, 2.65) * (h["cartilage"] - value)
        flat = hu.reshape(nk, -1)
        sub = flat[:, idx]
        sub += f * (value - sub)
        # scapulae: thin plates behind the posterolateral ribs, upper chest
        rs = Rc + b.wall[0] + 7
        fsc = _ramp(2.2 - np.abs(r - rs), wxy) * _ramp(psi - 0.55, 0.08) * _ramp(1.2 - psi, 0.08)
        fsc *= _ramp(Z1 - (b.heart[2] - 10), wz)
        sub += fsc * (0.7 * h["cortex"] - sub)
        flat[:, idx] = sub

    def _sternum(self, Z, sc, yc, hu):
        box = self.sternum_box
        if box is None:
            return
        b, h, wxy, wz = self.b, self.b.hu, self.wxy, self.wz
        st_top, st_bot = b.apex_z - 55, b.domes_z[0] - 15
        zr = _ramp(st_top - Z, wz) * _ramp(Z - st_bot, wz)
        if not zr.any():
            return
        X, Y = self.X[box], self.Y[box]
        half_w = 13 + 7 * _smooth(Z, st_top - 50, st_top - 20)
        fs, rho = _ellipse(X, half_w, Y + sc * b.cavity[1] - yc + 7, 6.0, wxy, wxy)
        sub = hu[:, box[0], box[1]]
        sub += fs * zr * (h["marrow"] + (h["cortex"] - h["marrow"]) * _smooth(rho, 0.6, 0.9) - sub)

    def _spine(self, Z, hu, lung):
        box = self.spine_box
        if box is None:
            return lung
        b, h, wxy, wz = self.b, self.b.hu, self.wxy, self.wz
        rv, pitch, disc_h, phase, rcan = b.spine
        X, Y = self.X[box], self.Y[box]
        yv = self.spine_y
        rvz = rv * (1 + 0.0012 * np.clip(-Z, 0, None))
        fb, rho = _ellipse(X, rvz, Y - yv, 0.9 * rvz, wxy, wxy)
        if hu is None:
            lung[:, box[0], box[1]] *= 1 - fb
            return lung
        ph = (Z - phase) / pitch
        dv = np.abs(ph - np.rint(ph)) * pitch
        disc = _ramp(disc_h / 2 - dv, wz)
        body_hu = h["marrow"] + (h["cortex"] - h["marrow"]) * _smooth(rho, 0.8, 0.97)
        body_hu = body_hu + disc * (h["disc"] - body_hu)
        yc = yv + 0.9 * rvz + rcan + 3
        fc, _ = _ellipse(X, rcan, Y - yc, rcan, wxy, wxy)
        fa, _ = _ellipse(X, rcan + 6, Y - yc, rcan + 5, wxy, wxy)
        fsp, _ = _ellipse(X, 3.5, Y - (yc + rcan + 11), 11.0, wxy, wxy)
        ftr, _ = _ellipse(np.abs(X) - 20, 14.0, Y - yc + 2, 5.0, wxy, wxy)
        arch = np.maximum(fa, np.maximum(fsp, ftr * _ramp(pitch * 0.32 - dv, wz)))
        sub = hu[:, box[0], box[1]]
        sub += arch * (0.55 * h["cortex"] - sub)
        sub += fc * (h["canal"] - sub)
        sub += fb * (body_hu - sub)
        return lung

