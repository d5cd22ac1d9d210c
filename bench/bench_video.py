"""Clips through Kiln's data path: scan -> probe and cut windows -> decode each window's frames -> pixels at the
bucket size, timed as clips/s, and peak RSS for N = 8 and 64 clips (each N in a fresh process). Flat RSS is the
goal: a clip's frames are decoded when its window is read and never kept, so memory is bounded by the batch, not
by the number of clips.

    .venv/bin/python bench/bench_video.py [--sizes 8 64] [--frames 33] [--size 256]
"""
from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def make_clips(folder: Path, n: int, frames: int, size: int) -> None:
    """n captioned H.264/MPEG-4 clips of moving noise (written once; generation is not timed)."""
    import av
    import numpy as np
    concept = folder / "1_motion"
    concept.mkdir(parents=True, exist_ok=True)
    base = np.random.default_rng(0).integers(0, 255, (size, size, 3), dtype=np.uint8)
    for i in range(n):
        path = concept / f"clip{i:04d}.mp4"
        if path.exists():
            continue
        with av.open(str(path), "w") as out:
            stream = out.add_stream("mpeg4", rate=24)
            stream.width = stream.height = size
            stream.pix_fmt = "yuv420p"
            for f in range(frames):
                img = np.roll(base, (i + f) * 3, axis=1)
                for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                    out.mux(packet)
            for packet in stream.encode():
                out.mux(packet)
        (concept / f"clip{i:04d}.txt").write_text(f"clip {i}, motion test")


def child(n: int, folder: str, frames: int, size: int) -> None:
    """Load the dataset and read every window's pixels once; print seconds, windows and peak RSS KiB."""
    sys.path.insert(0, str(REPO))
    import cli
    cli.load_pack()
    from kiln.core.data import DatasetConfig, load_dataset
    t0 = time.perf_counter()
    ds = load_dataset(DatasetConfig(path=folder, resolution=size, min_bucket_reso=64, max_bucket_reso=size,
                                    frame_extraction="slide", target_frames=17, frame_stride=8),
                      warn=lambda m: None)
    windows = 0
    for batch in ds.epoch_plan(0, 1, seed=0):
        for ref in batch:
            pixels = ds.load_pixels(ref)
            assert pixels.shape[0] == 17, pixels.shape
            windows += 1
    seconds = time.perf_counter() - t0
    print(f"{seconds:.3f} {windows} {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}")


def run(n: int, folder: Path, frames: int, size: int) -> tuple[float, int, int]:
    cmd = [sys.executable, __file__, "--child", str(n), str(folder), "--frames", str(frames), "--size", str(size)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.split()
    return float(out[-3]), int(out[-2]), int(out[-1])


def main(argv=None) -> list[tuple[int, float, int, int]]:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=[8, 64])
    ap.add_argument("--frames", type=int, default=33, help="frames per clip (slide windows of 17 every 8)")
    ap.add_argument("--size", type=int, default=256, help="clip width and height")
    ap.add_argument("--child", nargs=2)
    args = ap.parse_args(argv)
    if args.child:
        child(int(args.child[0]), args.child[1], args.frames, args.size)
        return []
    rows = []
    with tempfile.TemporaryDirectory(prefix="kiln-bench-video-") as tmp:
        print(f"{'clips':>6} {'windows':>8} {'s':>7} {'clips/s':>8} {'peak RSS MiB':>13}")
        for n in args.sizes:
            folder = Path(tmp) / f"n{n}"
            make_clips(folder, n, args.frames, args.size)
            seconds, windows, rss = run(n, folder, args.frames, args.size)
            rows.append((n, seconds, windows, rss))
            print(f"{n:>6} {windows:>8} {seconds:>7.2f} {n / seconds:>8.1f} {rss / 1024:>13.0f}", flush=True)
    (n0, _, _, r0), (n1, _, _, r1) = rows[0], rows[-1]
    print(f"peak RSS ratio {n1} vs {n0} clips: {r1 / r0:.2f} (flat is 1.0)")
    return rows


if __name__ == "__main__":
    main()
