"""Aspect-ratio buckets, as kohya makes them: every (w, h) on the step grid within [min, max] whose area
fits the target area, and each image assigned to the bucket whose aspect ratio is closest to its own."""
from __future__ import annotations

import math


def make_buckets(resolution: int, min_reso: int, max_reso: int, step: int) -> list[tuple[int, int]]:
    if min_reso > max_reso or step <= 0:
        raise ValueError(f"bucket settings need min <= max and step > 0 (got {min_reso}, {max_reso}, {step})")
    area = resolution * resolution
    found = {(resolution // step * step, resolution // step * step)}
    w = min_reso
    while w <= max_reso:
        h = min(max_reso, (area // w) // step * step)
        if h >= min_reso:
            found.add((w, h))
            found.add((h, w))
        w += step
    return sorted(found, key=lambda b: (b[0] / b[1], b))


def assign_bucket(size: tuple[int, int], buckets: list[tuple[int, int]], no_upscale: bool = False,
                  resolution: int = 512, step: int = 64) -> tuple[int, int]:
    w, h = size
    if no_upscale and w * h <= resolution * resolution:
        # Small images keep their own size, rounded down to the step (kohya's bucket_no_upscale).
        bw, bh = max(step, w // step * step), max(step, h // step * step)
        return bw, bh
    ar = w / h
    return min(buckets, key=lambda b: (abs(math.log(b[0] / b[1]) - math.log(ar)), -b[0] * b[1]))


def cover_size(size: tuple[int, int], bucket: tuple[int, int]) -> tuple[int, int]:
    """Scale so the image covers the bucket (then it is cropped to it)."""
    w, h = size
    bw, bh = bucket
    scale = max(bw / w, bh / h)
    return max(bw, math.ceil(w * scale - 1e-9)), max(bh, math.ceil(h * scale - 1e-9))
