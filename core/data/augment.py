"""Colour augmentation (kohya's color_aug): drawn anew every step, so latents of such samples are never cached."""
from __future__ import annotations

import math
import random

import numpy as np


def color_aug(arr: np.ndarray, rng: random.Random) -> np.ndarray:
    """Small hue rotation (in RGB, around the grey axis) and gamma change of float [H, W, 3] pixels in 0..1."""
    angle = rng.uniform(-0.1, 0.1) * math.pi
    c, s = math.cos(angle), math.sin(angle)
    k = 1 / 3
    sq = math.sqrt(k)
    rot = np.array([[c + (1 - c) * k, k * (1 - c) - sq * s, k * (1 - c) + sq * s],
                    [k * (1 - c) + sq * s, c + k * (1 - c), k * (1 - c) - sq * s],
                    [k * (1 - c) - sq * s, k * (1 - c) + sq * s, c + k * (1 - c)]], dtype=np.float32)
    out = np.clip(arr @ rot.T, 0, 1)
    return np.power(out, rng.uniform(0.85, 1.15)).astype(np.float32)
