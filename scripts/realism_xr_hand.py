"""Synthetic hand radiographs (default and detector modes) beside the real radiographs the test dependencies ship.

No real hand ships with pydicom or pydicom-data: the nearest real radiographs (CR of a child's lower leg and
a CR chest) are shown for detector texture only. Every image goes through the same display processing
(attenuation up, window from the 1st to the 99th percentile). Writes small PNGs into docs/images/ and prints
the numbers docs/realism.md quotes, ending with a ``RESULT`` line. The synthetic hands are synthetic.

    .venv/bin/python scripts/realism_xr_hand.py [--seed 1] [--n 6] [--out docs/images]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage

REAL = ("RG3_UNCR.dcm", "RG1_UNCR.dcm")  # CR extremity (Fuji), CR chest (Philips)


def display(img: np.ndarray, monochrome1: bool = False) -> np.ndarray:
    """The same display for every image: attenuation up, 1st-99th percentile window, 8 bits."""
    a = img.astype(np.float32)
    if monochrome1:
        a = a.max() - a
    lo, hi = np.percentile(a, [1, 99])
    return (np.clip((a - lo) / max(hi - lo, 1e-6), 0, 1) * 255).astype(np.uint8)


def real_images() -> dict[str, tuple[np.ndarray, float, str]]:
    import pydicom
    from pydicom.data import get_testdata_file

    out = {}
    for name in REAL:
        path = get_testdata_file(name)
        if path is None:
            continue
        ds = pydicom.dcmread(path)
        spacing = ds.get("PixelSpacing") or ds.get("ImagerPixelSpacing")
        mm = float(spacing[0]) if spacing and float(spacing[0]) > 0 else float("nan")
        what = f"{ds.get('Manufacturer')} {ds.Modality} {ds.get('BodyPartExamined')}, {ds.BitsStored} bits, " \
               f"{ds.PhotometricInterpretation}"
        out[name] = (display(ds.pixel_array, ds.PhotometricInterpretation == "MONOCHROME1"), mm, what)
    return out


def thumb(a: np.ndarray, height: int, label: str) -> Image.Image:
    im = Image.fromarray(a)
    im = im.resize((max(1, round(a.shape[1] * height / a.shape[0])), height), Image.LANCZOS)
    d = ImageDraw.Draw(im)
    d.rectangle((0, 0, 7 * len(label) + 4, 12), fill=0)
    d.text((2, 0), label, fill=255)
    return im


def row(images: list[Image.Image], gap: int = 4) -> Image.Image:
    w = sum(i.width for i in images) + gap * (len(images) - 1)
    out = Image.new("L", (w, max(i.height for i in images)), 0)
    x = 0
    for i in images:
        out.paste(i, (x, 0))
        x += i.width + gap
    return out


def save(im: Image.Image, path: Path) -> int:
    im.save(path, optimize=True)
    return path.stat().st_size


def texture(a: np.ndarray) -> float:
    """High-pass SD (8-bit display units) in the flattest 32 x 32 mid-grey block: noise and fine texture."""
    f = a.astype(np.float32)
    hp = f - ndimage.gaussian_filter(f, 2.0)
    best = None
    for r in range(0, f.shape[0] - 32, 16):
        for c in range(0, f.shape[1] - 32, 16):
            block = f[r:r + 32, c:c + 32]
            if 60 < block.mean() < 190:
                grad = float(np.abs(np.diff(ndimage.gaussian_filter(block, 4), axis=0)).mean())
                if best is None or grad < best[0]:
                    best = (grad, float(hp[r:r + 32, c:c + 32].std()))
    return best[1] if best else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--n", type=int, default=6)
    ap.add_argument("--out", type=Path, default=Path("docs/images"))
    args = ap.parse_args()
    from radtriage.synth import xr_hand

    args.out.mkdir(parents=True, exist_ok=True)
    times = {"phantom": [], "detector": []}
    hands = {}
    for i in range(args.n):
        for mode in ("phantom", "detector"):
            t = time.perf_counter()
            s = xr_hand.sample(np.random.default_rng([args.seed, i]), acquisition=mode)
            times[mode].append(time.perf_counter() - t)
            hands[(mode, i)] = s
    real = real_images()
    for name, (a, mm, what) in real.items():
        print(f"real {name}: {what}, {a.shape[0]}x{a.shape[1]}, texture {texture(a):.1f}")
    for (mode, i), s in sorted(hands.items()):
        acq = s.truth.get("acquisition", {})
        print(f"synthetic {mode} {i}: {s.image.shape[0]}x{s.image.shape[1]} at {s.pixel_spacing:.3f} mm, "
              f"bone age {s.truth['bone_age_months']:.0f} mo, {acq.get('vendor', '-')} {acq.get('detector', '')}, "
              f"conditions {s.truth.get('conditions', [])}, texture {texture(display(s.image)):.1f}")
    # 1. beside the real radiographs, same display
    tiles = [thumb(a, 250, f"REAL {n[:3]}") for n, (a, _, _) in real.items()]
    tiles += [thumb(display(hands[("phantom", 0)].image), 250, "SYN default")]
    tiles += [thumb(display(hands[("detector", i)].image), 250, f"SYN detector {i}") for i in range(min(4, args.n))]
    sizes = [save(row(tiles), args.out / "realism_xr_hand_beside_real.png")]
    # 2. texture at full resolution: 160 x 160 px crops
    crops = []
    for n, (a, _, _) in real.items():
        r, c = a.shape[0] // 2, a.shape[1] // 2
        crops.append(thumb(a[r - 80:r + 80, c - 80:c + 80], 160, f"REAL {n[:3]}"))
    for key in (("phantom", 0), ("detector", 0), ("detector", 1)):
        s = hands[key]
        px = s.truth["centres"]["capitate"]["px"]
        r, c = (int(v) for v in px)
        a = display(s.image)[max(r - 80, 0):r + 80, max(c - 80, 0):c + 80]
        crops.append(thumb(a, 160, f"SYN {key[0][:3]} {key[1]}"))
    sizes.append(save(row(crops), args.out / "realism_xr_hand_texture.png"))
    # 3. one girl's hand through childhood (detector mode, nothing added)
    ages = (12, 30, 60, 96, 132, 168, 204)
    growth = []
    for ba in ages:
        s = xr_hand.sample(np.random.default_rng(args.seed), acquisition="detector", size=320, conditions=(),
                           variants=(), vendor="DigitalDiagnost", sex="F", age_months=float(ba),
                           bone_age_months=float(ba))
        growth.append(thumb(display(s.image), 220, f"{ba} mo, {s.truth['carpal_count']} carpals"))
    sizes.append(save(row(growth), args.out / "realism_xr_hand_growth.png"))
    # 4. what departments produce, each forced
    shown = []
    for cond in ("cast", "ring", "second_hand", "low_exposure", "over_exposure", "grid", "low_resolution"):
        s = xr_hand.sample(np.random.default_rng(args.seed + 7), acquisition="detector", conditions=(cond,),
                           vendor="CR 30-X", age_months=120.0)
        shown.append(thumb(display(s.image), 240, cond))
    sizes.append(save(row(shown), args.out / "realism_xr_hand_conditions.png"))
    print("figures (bytes):", sizes)
    print(f"RESULT phantom_s_per_hand={np.mean(times['phantom']):.2f} detector_s_per_hand="
          f"{np.mean(times['detector']):.2f} n={args.n} real_radiographs={len(real)} real_hands=0")


if __name__ == "__main__":
    main()
