"""Input-guard measures of a hand radiograph that the bone-age model cannot read (see `inference.guard`).

Both are cheap statistics of the bright objects inside the collimated field
(`inference.bone_age.bright_objects`, on the image scaled to [0, 1] at ~256 px):

* `hand_count`: objects at least `HAND_SHARE` the size of the largest and
  `MIN_HAND` of the field. One hand and forearm is one object (markers, rings
  and initials are far smaller); both hands on one plate are two of about the
  same size. An over-exposed hand whose soft tissue burnt out shows only its
  bones, each small: counted as one hand.
* `wrist_cover_ratio`: the width of the hand (the objects of at least
  `MIN_PART` of the field, together) near its forearm end
  over its widest part, measured across its long axis (second moments). A hand
  narrows from the palm (and spread fingers) to the wrist and forearm; a cast
  or a splint, a wide sleeve from the metacarpals down the forearm, keeps the
  forearm end about as wide as the hand. The forearm end is taken as the end
  lower in the image (PA, fingers up, as hands are displayed): an upside-down
  or sideways hand reads wrong.

Their validated ranges come from synthetic hands only (`radtriage.synth.xr_hand`
detector mode); docs/realism.md and the model card say how they were set.
"""

from __future__ import annotations

import numpy as np

from radtriage.imaging.volume import Volume

HAND_SHARE = 0.3
MIN_HAND = 0.03  # of the open field: a hand is larger (synthetic: 5-40 %); one bone of a burnt-out hand smaller
MIN_PART = 0.01  # of the open field: markers and initials are smaller
END_SHARE = 0.2  # the forearm end: this share of the object's length


def _objects(v: Volume) -> tuple[np.ndarray, np.ndarray]:
    from radtriage.inference.bone_age import bright_objects
    from radtriage.inference.guard import PLANE_PX, _hand

    img, _ = _hand(v)  # scaled to [0, 1] at ~PLANE_PX
    labels, sizes, _, _ = bright_objects(img, PLANE_PX)
    return labels, sizes


def hand_count(v: Volume) -> float | None:
    """Bright objects of at least `HAND_SHARE` of the largest's size and `MIN_HAND` of the field: 1 for one
    hand (also when only its bones show), 2 for both hands."""
    labels, sizes = _objects(v)
    if not sizes.size:
        return 0.0
    return float(max(1, (sizes >= max(HAND_SHARE * sizes.max(), MIN_HAND * labels.size)).sum()))


def wrist_cover_ratio(v: Volume) -> float | None:
    """Median width over the forearm end (`END_SHARE` of the length) / the widest part, across the long axis."""
    labels, sizes = _objects(v)
    if not sizes.size:
        return None
    rr, cc = np.nonzero(np.isin(labels, 1 + np.flatnonzero(sizes >= MIN_PART * labels.size)))
    if rr.size < 200:
        return None
    pts = np.stack([rr - rr.mean(), cc - cc.mean()], 1)
    axis = np.linalg.eigh(np.cov(pts.T))[1][:, -1]  # the long axis
    axis = axis if axis[0] >= 0 else -axis  # pointing down the image: toward the forearm
    t = pts @ axis
    t = np.round(t - t.min()).astype(int)
    widths = np.convolve(np.bincount(t).astype(float), np.ones(3) / 3, mode="same")  # pixels across, per step
    n = len(widths)
    if n < 20:
        return None
    end = widths[int(n * (1 - END_SHARE)) : n - 2]
    return round(float(np.median(end) / widths.max()), 3)
