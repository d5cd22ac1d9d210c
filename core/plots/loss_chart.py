"""A loss chart as an image (PIL only): raw loss faint, smoothed loss bold."""
from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from ..data.images import to_float


def smooth(values: list[float], beta: float = 0.9) -> list[float]:
    """Bias-corrected exponential moving average (what TensorBoard's smoothing shows)."""
    out, avg = [], 0.0
    for i, v in enumerate(values, 1):
        avg = beta * avg + (1 - beta) * v
        out.append(avg / (1 - beta ** i))
    return out


def loss_plot(points: list[tuple[int, float]], width: int = 640, height: int = 360, title: str = "loss",
              validation: list[tuple[int, float]] | None = None) -> np.ndarray:
    """[H, W, 3] float32 in 0..1. validation: held-out losses, drawn as a second (orange) line."""
    validation = [tuple(v) for v in (validation or [])]
    img = Image.new("RGB", (width, height), (255, 255, 255))
    d = ImageDraw.Draw(img)
    left, right, top, bottom = 60, width - 20, 30, height - 40
    d.rectangle((left, top, right, bottom), outline=(180, 180, 180))
    d.text((left, 8), title, fill=(30, 30, 30))
    if points:
        steps = [p[0] for p in points]
        vals = [p[1] for p in points]
        lo, hi = min(vals + [v for _, v in validation]), max(vals + [v for _, v in validation])
        if hi - lo < 1e-12:
            lo, hi = lo - 0.5, hi + 0.5
        s0, s1 = min(steps + [s for s, _ in validation]), max(steps + [s for s, _ in validation])
        span = max(1, s1 - s0)

        def xy(s, v):
            return (left + (right - left) * (s - s0) / span, bottom - (bottom - top) * (v - lo) / (hi - lo))
        if len(points) > 1:
            d.line([xy(s, v) for s, v in zip(steps, vals)], fill=(170, 200, 235), width=1)
            d.line([xy(s, v) for s, v in zip(steps, smooth(vals))], fill=(20, 90, 200), width=3)
        else:
            x, y = xy(s0, vals[0])
            d.ellipse((x - 3, y - 3, x + 3, y + 3), fill=(20, 90, 200))
        if validation:
            if len(validation) > 1:
                d.line([xy(s, v) for s, v in validation], fill=(230, 120, 20), width=2)
            for s, v in validation:
                x, y = xy(s, v)
                d.ellipse((x - 3, y - 3, x + 3, y + 3), fill=(230, 120, 20))
            d.text((right - 170, 8), "train (smoothed)", fill=(20, 90, 200))
            d.text((right - 60, 8), "validation", fill=(230, 120, 20))
        for frac in (0.0, 0.5, 1.0):
            v = lo + (hi - lo) * frac
            y = bottom - (bottom - top) * frac
            d.text((4, y - 6), f"{v:.4g}", fill=(60, 60, 60))
        d.text((left, bottom + 8), f"step {s0}", fill=(60, 60, 60))
        d.text((right - 70, bottom + 8), f"step {s1}", fill=(60, 60, 60))
    else:
        d.text((left + 10, (top + bottom) // 2), "no steps yet", fill=(120, 120, 120))
    return to_float(img)
