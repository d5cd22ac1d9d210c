"""The one conversion between the float images Kiln passes around ([H, W, 3] float32 in 0..1, ComfyUI's
IMAGE layout) and 8-bit pixels (PIL, PNG files)."""
from __future__ import annotations

import numpy as np
from PIL import Image


def to_uint8(array) -> np.ndarray:
    """An image of floats in 0..1 as 8-bit pixels (clipped, rounded to the nearest level)."""
    return (np.clip(np.asarray(array, dtype=np.float32), 0.0, 1.0) * 255.0).round().astype(np.uint8)


def to_float(image: Image.Image | np.ndarray) -> np.ndarray:
    """8-bit pixels (a PIL image or a uint8 array) as floats in 0..1."""
    return np.asarray(image, dtype=np.float32) / 255.0
