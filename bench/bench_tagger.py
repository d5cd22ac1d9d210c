"""Tag 64 images with the same small WD14-shaped ONNX model (five convs) two ways, in one run: Kiln's pipeline
(decoding and preprocessing in threads, overlapped with batched inference) and the one-image-at-a-time
loop with preprocessing in the main thread that existing ComfyUI tagger nodes use. Target: >= 2x.

    .venv/bin/python bench/bench_tagger.py [--images 64] [--size 448] [--batch 8] [--workers 2] [--repeats 3]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "bench"))
import harness  # noqa: E402
import cli  # noqa: E402

cli.load_pack()
from kiln.core.tags.labels import Labels  # noqa: E402
from kiln.core.tags.tagger import TagSettings, postprocess, preprocess, tag_images  # noqa: E402
from tiny_tagger import write_conv_tagger  # noqa: E402


def write_bench_tagger(folder: Path, size: int, name: str = "bench-tagger") -> tuple[Path, Path]:
    """Five conv layers, about 1 GFLOP per image at 448 px: heavy enough that inference and decoding both matter."""
    return write_conv_tagger(folder, name, size, [3, 24, 48, 64, 96, 128], [2, 2, 2, 1, 2])


def make_images(folder: Path, n: int) -> list[Path]:
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    sizes = [(1024, 1536), (1536, 1024), (1200, 1200), (896, 1344)]
    for i in range(n):
        w, h = sizes[i % len(sizes)]
        small = rng.integers(0, 255, (h // 16, w // 16, 3), dtype=np.uint8)
        im = Image.fromarray(small).resize((w, h), Image.BILINEAR)
        p = folder / f"{i:03d}.{'jpg' if i % 2 else 'png'}"
        im.save(p, quality=92) if p.suffix == ".jpg" else im.save(p)
        paths.append(p)
    return paths


def one_at_a_time(paths, model, csv_path, settings, size):
    """What the most used ComfyUI tagger node does per image (read with the search tool): a new
    InferenceSession and a fresh read of the tag CSV on every call, then fit-resize with LANCZOS, paste on
    a white square, RGB -> BGR, and run one image; all in the calling thread."""
    import onnxruntime as ort
    out = []
    for p in paths:
        session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
        labels = Labels.from_csv(csv_path)
        img = Image.open(p).convert("RGB")
        ratio = size / max(img.size)
        new_size = tuple(int(x * ratio) for x in img.size)
        img = img.resize(new_size, Image.LANCZOS)
        square = Image.new("RGB", (size, size), (255, 255, 255))
        square.paste(img, ((size - new_size[0]) // 2, (size - new_size[1]) // 2))
        arr = np.asarray(square, dtype=np.float32)[:, :, ::-1][None].copy()
        probs = session.run(None, {session.get_inputs()[0].name: arr})[0][0]
        out.append(", ".join(t for t, _ in postprocess(probs, labels, settings)))
    return out


def one_image_reused_session(paths, model, labels, settings, size):
    """The same loop with one session kept: what is left of Kiln's lead is batching and overlapped decoding."""
    import onnxruntime as ort
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return [", ".join(t for t, _ in postprocess(
        session.run(None, {name: preprocess(Image.open(p).convert("RGB"), size)[None]})[0][0], labels, settings))
        for p in paths]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=64)
    ap.add_argument("--size", type=int, default=448)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--workers", type=int, default=2, help="decoding threads")
    ap.add_argument("--repeats", type=int, default=3, help="alternating rounds; medians are reported")
    args = ap.parse_args()
    tmp = harness.scratch_dir("kiln-tagbench-")
    model, csv = write_bench_tagger(tmp / "model", size=args.size)
    cache = REPO / ".cache" / f"tag-bench-{args.images}"
    paths = sorted(cache.glob("*.*")) if cache.is_dir() else []
    if len(paths) < args.images:
        paths = make_images(cache, args.images)
    paths = paths[: args.images]
    settings = TagSettings()
    labels = Labels.from_csv(csv)
    times = {"base": [], "kept": [], "kiln": []}
    for _ in range(args.repeats):   # alternate, so load from other processes hits all three alike
        t = time.perf_counter()
        base = one_at_a_time(paths, model, csv, settings, args.size)
        times["base"].append(time.perf_counter() - t)
        t = time.perf_counter()
        kept = one_image_reused_session(paths, model, labels, settings, args.size)
        times["kept"].append(time.perf_counter() - t)
        t = time.perf_counter()
        ours = tag_images(paths, model, labels, settings, batch_size=args.batch, workers=args.workers)
        times["kiln"].append(time.perf_counter() - t)
    med = {k: statistics.median(v) for k, v in times.items()}
    same = sum(r.caption == b for r, b in zip(ours, base)) / len(base)
    same_kept = sum(r.caption == b for r, b in zip(ours, kept)) / len(kept)
    print(f"{len(paths)} images (PNG and JPEG, 896-1536 px), model input {args.size}px, {os.cpu_count()} cores, "
          f"median of {args.repeats} alternating rounds")
    print(f"one at a time, session per image, preprocessing in the main thread (ComfyUI-WD14-Tagger): "
          f"{med['base']:.2f} s  {[round(x, 2) for x in times['base']]}")
    print(f"one at a time, session kept: {med['kept']:.2f} s  {[round(x, 2) for x in times['kept']]}")
    print(f"Kiln: {args.workers} decoding threads overlapped with batch-{args.batch} inference: "
          f"{med['kiln']:.2f} s  {[round(x, 2) for x in times['kiln']]}")
    print(f"speed ratio Kiln / one-at-a-time: {med['base'] / med['kiln']:.2f}x (target >= 2)")
    print(f"speed ratio Kiln / one-at-a-time with the session kept: {med['kept'] / med['kiln']:.2f}x")
    print(f"same captions as the one-at-a-time loops: {same:.0%} / {same_kept:.0%} (this random model's scores sit "
          "near the thresholds; the loops resample with LANCZOS / decode JPEGs at full size)")


if __name__ == "__main__":
    main()
