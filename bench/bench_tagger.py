"""Tag 64 images with the same tiny WD14-shaped ONNX model two ways, in one run: Kiln's pipeline
(decoding and preprocessing in threads, overlapped with batched inference) and the one-image-at-a-time
loop with preprocessing in the main thread that existing ComfyUI tagger nodes use. Target: >= 2x.

    .venv/bin/python bench/bench_tagger.py [--images 64] [--size 448] [--batch 8]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))
import kiln  # noqa: E402

kiln.load_pack()
from kiln_pack.core.tags.labels import Labels  # noqa: E402
from kiln_pack.core.tags.tagger import TagSettings, postprocess, preprocess, session_for, tag_images  # noqa: E402
from tiny_tagger import write_tiny_tagger  # noqa: E402


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


def labels_for(csv):
    return Labels.from_csv(csv)


def one_image_reused_session(paths, model, labels, settings, size):
    session, _ = session_for(model)
    name = session.get_inputs()[0].name
    return [postprocess(session.run(None, {name: preprocess(Image.open(p).convert("RGB"), size)[None]})[0][0],
                        labels, settings) for p in paths]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=64)
    ap.add_argument("--size", type=int, default=448)
    ap.add_argument("--batch", type=int, default=4)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="kiln-tagbench-"))
    model, csv = write_tiny_tagger(tmp / "model", size=args.size, width=24)
    cache = REPO / ".cache" / f"tag-bench-{args.images}"
    paths = sorted(cache.glob("*.*")) if cache.is_dir() else []
    if len(paths) < args.images:
        paths = make_images(cache, args.images)
    settings = TagSettings()
    t = time.perf_counter()
    base = one_at_a_time(paths, model, csv, settings, args.size)
    t_base = time.perf_counter() - t
    t = time.perf_counter()
    ours = tag_images(paths, model, Labels.from_csv(csv), settings, batch_size=args.batch)   # session made here, once
    t_ours = time.perf_counter() - t
    same = sum(r.caption == b for r, b in zip(ours, base)) / len(base)
    print(f"{len(paths)} images, model input {args.size}px")
    print(f"one at a time (session per image, preprocessing in the main thread): {t_base:.2f} s")
    print(f"Kiln (threaded decode overlapped with batch-{args.batch} inference): {t_ours:.2f} s")
    print(f"speed ratio kiln/one-at-a-time: {t_base / t_ours:.2f}x (target >= 2)")
    print(f"identical captions: {same:.0%} (the two preprocess a little differently: pad-then-resize vs "
          "resize-then-pad, JPEG draft decoding)")
    _, base_only = time.perf_counter(), None
    t = time.perf_counter()
    session_for(model)
    base_reused = one_image_reused_session(paths, model, labels_for(csv), settings, args.size)
    t_reused = time.perf_counter() - t
    print(f"(one at a time with the session kept: {t_reused:.2f} s; ratio against that: {t_reused / t_ours:.2f}x)")


if __name__ == "__main__":
    main()
