"""Geometry shared by the synthetic generators."""

from __future__ import annotations

import math

import numpy as np


def rotation(yaw: float, pitch: float, roll: float) -> np.ndarray:
    """3x3 rotation: yaw about z, then pitch about x, then roll about y (radians)."""
    cy, sy, cp, sp, cr, sr = (math.cos(yaw), math.sin(yaw), math.cos(pitch), math.sin(pitch),
                              math.cos(roll), math.sin(roll))
    rz = np.array([[cy, -sy, 0], [sy, cy, 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, cp, -sp], [0, sp, cp]])
    ry = np.array([[cr, 0, sr], [0, 1, 0], [-sr, 0, cr]])
    return rz @ rx @ ry
