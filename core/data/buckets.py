"""Aspect-ratio buckets, as kohya's BucketManager makes and picks them.

Predefined buckets: the square nearest the target area, plus for every width w on the step grid within
[min, max] the tallest height h (on the grid, <= max) with w*h <= resolution**2, and the swap (h, w).
An image goes to the bucket whose aspect ratio is nearest its own (plain difference of w/h, as kohya;
the first of equals in sorted order wins). Then it is scaled to cover the bucket and cropped.

With no-upscale there are no predefined buckets: an image within the target area keeps its own size,
rounded down to the step (cropped, never scaled); a bigger one is scaled down to the target area first.
"""
from __future__ import annotations

import math


def make_buckets(resolution: int, min_reso: int, max_reso: int, step: int) -> list[tuple[int, int]]:
    if min_reso > max_reso or step <= 0 or resolution <= 0:
        raise ValueError(f"bucket settings need 0 < step, min <= max and resolution > 0 "
                         f"(got min {min_reso}, max {max_reso}, step {step}, resolution {resolution})")
    area = resolution * resolution
    side = int(math.sqrt(area) // step) * step
    found = {(side, side)} if side > 0 else set()
    w = min_reso
    while w <= max_reso:
        h = min(max_reso, (area // w) // step * step)
        if h >= min_reso:
            found.add((w, h))
            found.add((h, w))
        w += step
    if not found:
        raise ValueError(f"no bucket fits resolution {resolution} with min {min_reso}, max {max_reso}, step {step}")
    return sorted(found)


def _round_to_step(x: float, step: int) -> int:
    x = int(x + 0.5)
    return x - x % step


def _no_upscale_size(size: tuple[int, int], area: int, step: int) -> tuple[int, int]:
    """kohya's bucket_no_upscale: the size the image is scaled to (its own when within the area)."""
    w, h = size
    if w * h <= area:
        return w, h
    ar = w / h
    rw = math.sqrt(area * ar)
    rh = area / rw
    bw = _round_to_step(rw, step)
    bh_in_w = _round_to_step(bw / ar, step)
    bh = _round_to_step(rh, step)
    bw_in_h = _round_to_step(bh * ar, step)
    err_w = abs(bw / bh_in_w - ar) if bh_in_w else math.inf
    err_h = abs(bw_in_h / bh - ar) if bh else math.inf
    if err_w < err_h:
        return bw, int(bw / ar + 0.5)
    return int(bh * ar + 0.5), bh


def assign_bucket(size: tuple[int, int], buckets: list[tuple[int, int]], no_upscale: bool = False,
                  resolution: int = 512, step: int = 64) -> tuple[int, int]:
    """The bucket (width, height) for an image of ``size`` (after EXIF orientation)."""
    w, h = size
    if no_upscale:
        sw, sh = _no_upscale_size(size, resolution * resolution, step)
        # Never below one step (a sliver image is then scaled up to one step; nothing else is).
        return max(step, sw - sw % step), max(step, sh - sh % step)
    ar = w / h
    return min(buckets, key=lambda b: abs(b[0] / b[1] - ar))   # min() keeps the first of equals, as argmin


def cover_size(size: tuple[int, int], bucket: tuple[int, int]) -> tuple[int, int]:
    """Scale so the image covers the bucket (then it is cropped to it); kohya's rounding."""
    w, h = size
    bw, bh = bucket
    scale = max(bw / w, bh / h)
    return max(bw, int(w * scale + 0.5)), max(bh, int(h * scale + 0.5))


def scaled_size(size: tuple[int, int], bucket: tuple[int, int], no_upscale: bool = False,
                resolution: int = 512, step: int = 64) -> tuple[int, int]:
    """The size an image is resized to before the bucket crop. With no-upscale an image that already
    covers its bucket at its own size (within the target area) is only cropped, as kohya does."""
    if no_upscale and size[0] >= bucket[0] and size[1] >= bucket[1] and size[0] * size[1] <= resolution ** 2:
        return size
    return cover_size(size, bucket)
