"""Preparing 200 mixed-size images (decode, orient, convert, bucket, resize, crop): Kiln's dataset pipeline
against a plain single-threaded PIL loop doing the same work, in one run. Target: >= 1.8x on 2 cores.

    .venv/bin/python bench/bench_dataset.py [--images 200] [--resolution 512]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
import kiln  # noqa: E402

kiln.load_pack()
from kiln_pack.core.data import DatasetConfig, load_dataset  # noqa: E402
from kiln_pack.core.data.buckets import assign_bucket, cover_size, make_buckets  # noqa: E402

SIZES = [(3000, 2000), (2048, 2048), (1200, 1800), (1920, 1080), (800, 600), (640, 960), (4000, 3000), (1024, 768)]


def make_images(folder: Path, n: int) -> None:
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        w, h = SIZES[i % len(SIZES)]
        # Smooth gradients plus noise: compresses like a photo, not like a flat colour.
        y, x = np.mgrid[0:h:4, 0:w:4]
        base = np.stack([(x * (i + 1)) % 256, (y * 3) % 256, ((x + y) * 2) % 256], -1).astype(np.uint8)
        small = Image.fromarray(base).resize((w, h), Image.BILINEAR)
        arr = np.asarray(small).astype(np.int16) + rng.integers(-12, 12, (h, w, 3))
        im = Image.fromarray(arr.clip(0, 255).astype(np.uint8))
        kind = i % 4
        if kind == 0:
            im.save(folder / f"{i:03d}.png")
        elif kind == 1:
            im.convert("RGBA").save(folder / f"{i:03d}.webp", quality=85)
        else:
            exif = Image.Exif()
            exif[0x0112] = 6 if kind == 3 else 1
            im.save(folder / f"{i:03d}.jpg", quality=90, exif=exif)


def baseline(files: list[Path], resolution: int) -> list[np.ndarray]:
    """What a plain loader does: full decode, orient, convert, pick the bucket, resize, centre-crop."""
    buckets = make_buckets(resolution, 256, 1024, 64)
    out = []
    for f in files:
        with Image.open(f) as im:
            im = ImageOps.exif_transpose(im)
            im = im.convert("RGB")
            bucket = assign_bucket(im.size, buckets)
            sw, sh = cover_size(im.size, bucket)
            im = im.resize((sw, sh), Image.LANCZOS)
            x, y = (sw - bucket[0]) // 2, (sh - bucket[1]) // 2
            out.append(np.asarray(im.crop((x, y, x + bucket[0], y + bucket[1])), dtype=np.float32) / 255.0)
    return out


def kiln_prepare(folder: Path, resolution: int, workers: int) -> list:
    ds = load_dataset(DatasetConfig(path=str(folder), resolution=resolution), workers=workers)
    refs = {}
    for batch in ds.epoch_plan(0, 1, 0):
        for r in batch:
            refs.setdefault(r.index, r)
    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(lambda r: ds.load_pixels(r).numpy(), refs.values()))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--images", type=int, default=200)
    p.add_argument("--resolution", type=int, default=512)
    p.add_argument("--workers", type=int, default=4)
    args = p.parse_args()
    cache = REPO / ".cache" / f"bench-images-{args.images}"
    folder = cache / "1_bench"
    if not folder.is_dir() or len(list(folder.iterdir())) < args.images:
        print(f"making {args.images} test images in {folder} (once)")
        make_images(folder, args.images)
    files = sorted(folder.iterdir())
    t = time.perf_counter()
    base = baseline(files, args.resolution)
    t_base = time.perf_counter() - t
    t = time.perf_counter()
    ours = kiln_prepare(cache, args.resolution, args.workers)
    t_kiln = time.perf_counter() - t
    assert len(ours) == len(base) == len(files)
    assert sorted(a.shape for a in ours) == sorted(a.shape for a in base), "different buckets"
    print(f"{len(files)} images at resolution {args.resolution}")
    print(f"plain PIL loop, 1 thread: {t_base:.2f} s")
    print(f"Kiln pipeline ({args.workers} threads, JPEG draft decode, reducing_gap): {t_kiln:.2f} s "
          "(includes Kiln's corrupt-file scan)")
    print(f"speed ratio kiln/plain: {t_base / t_kiln:.2f}x (target >= 1.8)")


if __name__ == "__main__":
    main()
