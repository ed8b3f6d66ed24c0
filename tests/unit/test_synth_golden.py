"""The synthetic generators' output against fingerprints stored in tests/synth_golden.json.

For each kind and two seeds: every file a study writes through `synthesize`
(each DICOM file's header and pixels, and truth.json), and every array and truth
document that `sample` (and, for xr-hand, `render`; for cta-head, `localizer`)
returns at a small size. Nothing in the files depends on the clock: dates
and UIDs come from the seed (`StudyIdentity`), so no field is excluded.

Floating point differs in its last bits from one CPU to another (NumPy picks
SIMD kernels by CPU), and a pixel rounded from such a value may move by one. So
a fingerprint is exact where that cannot matter and close where it can: a
header's digest with decimal and float values rounded to 3 decimals, a truth
document's digest with floats to 6 significant digits, and for each array (or
PixelData) its dtype and shape exactly and its mean, standard deviation and
intensity-weighted centroid to a relative 1e-4. Any change of anatomy,
acquisition or header shows; a different CPU does not.

The digests were made once with the generators as they were before their
reorganisation into packages; a change that alters any output fails here.
Regenerate them (``python tests/unit/test_synth_golden.py --write``) only for
a change that is meant to alter the output, and say so in its commit.
"""

from __future__ import annotations

import hashlib
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

GOLDEN = Path(__file__).resolve().parents[1] / "synth_golden.json"  # tests/data/ is git-ignored

# kind -> [(seed, options)]: small, but through every series a study writes
STUDIES: dict[str, list[tuple[int, dict[str, Any]]]] = {
    "ct-head": [(3, {"matrix": 64}), (4, {"matrix": 64, "positive": True})],
    "cta-head": [(3, {"matrix": 64}), (4, {"matrix": 64, "lvo": True})],
    "ct-chest": [(3, {"matrix": 64}), (4, {"matrix": 64, "positive": True})],
    "xr-hand": [(3, {}), (4, {})],
}


def _array(a: np.ndarray | None) -> Any:
    if a is None:
        return "none"
    a = np.asarray(a)
    w = np.abs(a.astype(np.float64))
    total = float(w.sum()) or 1.0
    centroid = [float((w.sum(axis=tuple(j for j in range(a.ndim) if j != i)) * np.arange(n)).sum() / total)
                for i, n in enumerate(a.shape)]
    return {"dtype": a.dtype.str, "shape": list(a.shape),
            "stats": [float(f"{v:.7g}") for v in (a.mean(), a.std(), *centroid)]}


def _rounded(value: Any, digits: int) -> Any:
    if isinstance(value, float):
        return float(f"{value:.{digits}g}")
    if isinstance(value, dict):
        return {k: _rounded(v, digits) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_rounded(v, digits) for v in value]
    return value


def _doc(truth: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(_rounded(truth, 6), sort_keys=True, default=float).encode()).hexdigest()[:24]


def _dicom(path: Path) -> dict[str, Any]:
    import pydicom

    ds = pydicom.dcmread(path)
    h = hashlib.sha256()
    for elem in ds.file_meta.iterall():
        h.update(f"{elem.tag}{elem.VR}{elem.value!r}".encode())
    for elem in ds.iterall():
        if elem.tag == 0x7FE00010:
            continue
        value = elem.value
        if elem.VR in ("DS", "FD", "FL"):
            values = value if isinstance(value, (list, tuple, pydicom.multival.MultiValue)) else [value]
            value = [None if v is None or v == "" else round(float(v), 3) for v in values]
        h.update(f"{elem.tag}{elem.VR}{value!r}".encode())
    return {"header": h.hexdigest()[:24], "pixels": _array(ds.pixel_array) if "PixelData" in ds else "none"}


def _studies(kind: str) -> dict[str, Any]:
    from radtriage.synth import synthesize

    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for seed, options in STUDIES[kind]:
            (folder,) = synthesize(kind, 1, seed, Path(tmp), options)
            for f in sorted(folder.iterdir()):
                out[f"{seed}/{f.name}"] = (_dicom(f) if f.suffix == ".dcm"
                                           else _doc(json.loads(f.read_text())) if f.suffix == ".json"
                                           else hashlib.sha256(f.read_bytes()).hexdigest())
    return out


def _samples(kind: str) -> dict[str, Any]:
    from radtriage.synth import ct_chest, ct_head, cta_head, xr_hand

    out: dict[str, Any] = {}
    if kind == "ct-head":
        cases = {1: dict(subtypes=("epidural", "intraventricular", "subarachnoid")),
                 2: dict(subtypes=("intraparenchymal", "subdural"), slice_thickness=2.5, max_slices=20)}
        for seed, kw in cases.items():
            s = ct_head.sample(np.random.default_rng(seed), matrix=96, bone_kernel=True, **kw)
            out.update({f"{seed}/hu": _array(s.hu), f"{seed}/labels": _array(s.labels),
                        f"{seed}/bone": _array(s.bone), f"{seed}/truth": _doc(s.truth),
                        f"{seed}/geometry": _doc({"spacing": s.spacing, "origin": s.origin,
                                                  "thickness": s.slice_thickness})})
    elif kind == "ct-chest":
        for seed in (1, 2):
            s = ct_chest.sample(np.random.default_rng(seed), matrix=64, slice_spacing=2.5, n_slices=40,
                                n_nodules=3 if seed == 1 else None)
            out.update({f"{seed}/hu": _array(s.hu), f"{seed}/truth": _doc(s.truth),
                        f"{seed}/geometry": _doc({"spacing": s.spacing, "origin": s.origin,
                                                  "thickness": s.slice_thickness})})
    elif kind == "cta-head":
        for seed in (1, 2):
            s = cta_head.sample(np.random.default_rng(seed), lvo=seed == 1, matrix=96, coverage_mm=50.0,
                                slice_thickness=1.25)
            scout, spacing, origin = cta_head.localizer(s, np.random.default_rng(seed))
            out.update({f"{seed}/hu": _array(s.hu), f"{seed}/truth": _doc(s.truth),
                        f"{seed}/localizer": _array(scout),
                        f"{seed}/geometry": _doc({"spacing": s.spacing, "origin": s.origin,
                                                  "thickness": s.slice_thickness, "scout": [spacing, origin]})})
    else:
        for seed in (1, 2):
            s = xr_hand.sample(np.random.default_rng(seed), size=256)
            out.update({f"{seed}/image": _array(s.image), f"{seed}/truth": _doc(s.truth),
                        f"{seed}/spacing": _doc({"spacing": s.pixel_spacing})})
            rng = np.random.default_rng(seed + 10)
            subject = xr_hand.draw_subject(rng, age_months=60.0 * seed)
            o = xr_hand.render(rng, subject, view="oblique", pixel_spacing=0.15, binning=4)
            out.update({f"{seed}/oblique": _array(o.image), f"{seed}/oblique_truth": _doc(o.truth)})
    return out


def digests(kind: str) -> dict[str, dict[str, Any]]:
    return {"studies": _studies(kind), "samples": _samples(kind)}


def _same(got: Any, expected: Any) -> bool:
    """Equal, with an array's statistics equal to a relative 1e-4 (see the module's note)."""
    if isinstance(expected, dict) and "stats" in expected:
        return (isinstance(got, dict) and got["dtype"] == expected["dtype"] and got["shape"] == expected["shape"]
                and bool(np.allclose(got["stats"], expected["stats"], rtol=1e-4, atol=1e-6)))
    if isinstance(expected, dict):
        return isinstance(got, dict) and got.keys() == expected.keys() and all(
            _same(got[k], v) for k, v in expected.items())
    return got == expected


@pytest.mark.parametrize("kind", list(STUDIES))
def test_output_unchanged(kind):
    expected = json.loads(GOLDEN.read_text())[kind]
    got = digests(kind)
    for part in ("studies", "samples"):
        assert sorted(got[part]) == sorted(expected[part]), f"{kind} {part}: other files or arrays"
        changed = sorted(k for k in expected[part] if not _same(got[part][k], expected[part][k]))
        assert not changed, f"{kind} {part} differ: {changed}"


if __name__ == "__main__" and sys.argv[1:] == ["--write"]:
    GOLDEN.write_text(json.dumps({kind: digests(kind) for kind in STUDIES}, indent=0, sort_keys=True,
                                 separators=(",", ":")) + "\n")
    print(f"wrote {GOLDEN}")
