"""Synthetic CT heads (phantom and scanner modes) beside the real CT slices shipped with the test dependencies.

Writes small PNGs into docs/images/ (slices in one window, HU histograms, noise power spectra) and prints
the numbers docs/realism.md quotes, ending with a ``RESULT`` line. The synthetic heads are synthetic.

    .venv/bin/python scripts/realism_ct_head.py [--seed 1] [--matrix 256] [--out docs/images]
"""

from __future__ import annotations

import argparse
import glob
import os
import time
from pathlib import Path

import numpy as np

WINDOW = (40.0, 80.0)  # brain window: centre, width
CLASSES = {"air": (-1100.0, -900.0), "fat": (-200.0, -30.0), "CSF": (0.0, 15.0), "brain": (15.0, 60.0),
           "bone": (300.0, 3100.0)}


def real_slices() -> dict[str, tuple[np.ndarray, float, str]]:
    """Every real CT axial image in pydicom's test files and pydicom-data: name -> (HU, pixel mm, what it is)."""
    import pydicom
    import pydicom.data

    root = Path(pydicom.data.__file__).parent / "test_files"
    store = [p for p in glob.glob(str(Path(pydicom.__file__).parents[1] / "data_store" / "data" / "*.dcm"))]
    out, seen = {}, set()
    for f in sorted(glob.glob(str(root / "**" / "*.dcm"), recursive=True) + store):
        try:
            ds = pydicom.dcmread(f)
            if ds.get("Modality") != "CT" or "AXIAL" not in list(ds.get("ImageType", [])) or "PixelSpacing" not in ds:
                continue
            if "DERIVED" in str(ds.ImageType[0]) or ds.SOPInstanceUID in seen:
                continue  # lossy or re-encoded copies of an original
            seen.add(ds.SOPInstanceUID)
            hu = ds.pixel_array.astype(np.float32) * float(ds.get("RescaleSlope", 1)) + float(ds.get("RescaleIntercept", 0))
        except Exception:  # noqa: BLE001 - a file this script cannot decode is left out
            continue
        what = f"{ds.get('BodyPartExamined') or '?'}, kernel {ds.get('ConvolutionKernel')}, {ds.get('KVP')} kVp, " \
               f"{ds.get('SliceThickness')} mm"
        out[os.path.basename(f)] = (hu, float(ds.PixelSpacing[0]), what)
    return out


def synthetic(seed: int, matrix: int) -> dict[str, tuple[np.ndarray, float, str, float]]:
    from radtriage.synth import ct_head

    out = {}
    for mode in ("phantom", "scanner"):
        t = time.perf_counter()
        s = ct_head.sample(np.random.default_rng(seed), matrix=matrix, positive=False, acquisition=mode,
                           slice_thickness=5.0)
        dt = time.perf_counter() - t
        z = int(np.argmax([(sl > 15).sum() - 4 * (sl > 300).sum() for sl in s.hu]))  # most brain, least bone
        out[f"synthetic {mode}"] = (s.hu[z].astype(np.float32), s.spacing[1], f"SYNTHETIC, {mode} mode, slice {z}", dt)
    return out


def class_stats(hu: np.ndarray) -> dict[str, tuple[float, float, float]]:
    """Per HU class: fraction of the pixels, mean and SD (HU)."""
    out = {}
    for name, (lo, hi) in CLASSES.items():
        v = hu[(hu >= lo) & (hu < hi)]
        out[name] = (v.size / hu.size, float(v.mean()) if v.size else float("nan"), float(v.std()) if v.size else float("nan"))
    return out


def uniform_nps(hu: np.ndarray, pixel: float, size: int = 32) -> tuple[float, np.ndarray, np.ndarray, tuple[int, int]]:
    """Noise SD and radial noise power spectrum (HU^2 mm^2 against lp/mm) of the most uniform soft-tissue ROI.

    The ROI is the size x size patch with mean 0-80 HU and the least SD (a plane fitted and removed).
    """
    best, at = None, (0, 0)
    step = size // 2
    for y in range(0, hu.shape[0] - size, step):
        for x in range(0, hu.shape[1] - size, step):
            p = hu[y:y + size, x:x + size]
            if 0 <= p.mean() <= 80 and p.min() > -100 and (best is None or p.std() < best):
                best, at = float(p.std()), (y, x)
    p = hu[at[0]:at[0] + size, at[1]:at[1] + size].astype(np.float64)
    yy, xx = np.mgrid[:size, :size]
    a = np.c_[yy.ravel(), xx.ravel(), np.ones(size * size)]
    p = p - (a @ np.linalg.lstsq(a, p.ravel(), rcond=None)[0]).reshape(size, size)
    nps = np.abs(np.fft.fft2(p)) ** 2 * pixel * pixel / (size * size)
    f = np.hypot(*np.meshgrid(np.fft.fftfreq(size, pixel), np.fft.fftfreq(size, pixel), indexing="ij"))
    edges = np.linspace(0, f.max(), 12)
    which = np.digitize(f.ravel(), edges)
    radial = np.array([nps.ravel()[which == i].mean() if np.any(which == i) else np.nan for i in range(1, len(edges))])
    return float(p.std()), (edges[:-1] + edges[1:]) / 2, radial, at


def figures(images: dict, out: Path) -> dict[str, dict]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    lo, hi = WINDOW[0] - WINDOW[1] / 2, WINDOW[0] + WINDOW[1] / 2
    names = list(images)
    fig, axes = plt.subplots(1, len(names), figsize=(2.2 * len(names), 2.5))
    for ax, name in zip(axes, names):
        ax.imshow(images[name][0], cmap="gray", vmin=lo, vmax=hi)
        ax.set_title(name.replace(".dcm", ""), fontsize=7)
        ax.axis("off")
    fig.suptitle(f"window {WINDOW[0]:g}/{WINDOW[1]:g} HU (synthetic heads are synthetic)", fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "realism_ct_head_slices.png", dpi=70)
    plt.close(fig)
    numbers: dict[str, dict] = {}
    fig, (h_ax, n_ax) = plt.subplots(1, 2, figsize=(8, 3))
    for name in names:
        hu, pixel = images[name][0], images[name][1]
        h, e = np.histogram(hu, bins=np.linspace(-1100, 1900, 151), density=True)
        h_ax.semilogy((e[:-1] + e[1:]) / 2, h + 1e-7, label=name.replace(".dcm", ""), lw=1)
        sd, f, radial, at = uniform_nps(hu, pixel)
        n_ax.semilogy(f, radial, label=name.replace(".dcm", ""), lw=1)
        peak = float(f[int(np.nanargmax(radial))])
        mean_f = float(np.nansum(f * radial) / np.nansum(radial))
        numbers[name] = {"classes": class_stats(hu), "roi_sd": sd, "nps_peak": peak, "nps_mean_f": mean_f,
                         "roi": at, "pixel": pixel}
    h_ax.set_xlabel("HU")
    h_ax.set_ylabel("density")
    h_ax.set_title("HU histogram", fontsize=8)
    n_ax.set_xlabel("lp/mm")
    n_ax.set_ylabel("NPS (HU^2 mm^2)")
    n_ax.set_title("noise power spectrum, most uniform 32x32 soft-tissue ROI", fontsize=8)
    n_ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(out / "realism_ct_head_hist_nps.png", dpi=70)
    plt.close(fig)
    return numbers


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--matrix", type=int, default=256)
    ap.add_argument("--out", type=Path, default=Path("docs/images"))
    args = ap.parse_args()
    real = real_slices()
    synth = synthetic(args.seed, args.matrix)
    images = {k: (v[0], v[1]) for k, v in {**synth, **real}.items()}
    numbers = figures(images, args.out)
    for name, (_, pixel, what, *rest) in {**synth, **real}.items():
        n = numbers[name]
        cls = " ".join(f"{c}={v[0] * 100:.1f}%/{v[1]:.0f}+-{v[2]:.0f}" for c, v in n["classes"].items())
        print(f"{name}: {what}; pixel {pixel:.3f} mm; ROI SD {n['roi_sd']:.1f} HU; NPS peak {n['nps_peak']:.2f} "
              f"mean {n['nps_mean_f']:.2f} lp/mm; {cls}" + (f"; {rest[0]:.1f} s/head" if rest else ""))
    for f in sorted(args.out.glob("realism_ct_head_*.png")):
        print(f"{f} {f.stat().st_size // 1024} KB")
    s = {k.split()[-1]: v[3] for k, v in synth.items()}
    print(f"RESULT matrix={args.matrix} phantom_s_per_head={s['phantom']:.1f} scanner_s_per_head={s['scanner']:.1f} "
          f"real_slices={len(real)}")


if __name__ == "__main__":
    main()
