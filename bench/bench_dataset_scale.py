"""Memory of Kiln Load Dataset as the dataset grows: peak RSS and seconds for N = 100, 400, 1600 images
(each N loaded in a fresh process), with Kiln's bounded image memory against keeping every scaled image
(the old 2 GiB budget). Flat RSS is the goal: memory must not grow with the number of images.

    .venv/bin/python bench/bench_dataset_scale.py [--sizes 100 400 1600] [--resolution 512]
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


def make_images(folder: Path, n: int, size=(576, 640)) -> None:
    """n JPEGs of a few sizes and colours (written once; generation is not timed)."""
    import numpy as np
    from PIL import Image
    concept = folder / "1_scale"
    concept.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    base = rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
    for i in range(n):
        path = concept / f"{i:05d}.jpg"
        if not path.exists():
            Image.fromarray(np.roll(base, i * 7, axis=1)).save(path, quality=85)
            (concept / f"{i:05d}.txt").write_text(f"image {i}, scale test")


def child(n: int, folder: str, resolution: int, keep_mb: float | None) -> None:
    """Load the dataset once; print seconds and the process's peak RSS in KiB (last token)."""
    make_images(Path(folder), n)
    sys.path.insert(0, str(REPO))
    import cli
    cli.load_pack()
    from kiln.core.data import DatasetConfig, load_dataset
    t0 = time.perf_counter()
    ds = load_dataset(DatasetConfig(path=folder, resolution=resolution), warn=lambda m: None,
                      keep_bytes=None if keep_mb is None else int(keep_mb * 1024 ** 2))
    seconds = time.perf_counter() - t0
    assert len(ds) == n
    print(f"{seconds:.2f} {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}")


def run(n: int, folder: Path, resolution: int, keep_mb: float | None) -> tuple[float, int]:
    cmd = [sys.executable, __file__, "--child", str(n), str(folder), "--resolution", str(resolution)]
    if keep_mb is not None:
        cmd += ["--keep-mb", str(keep_mb)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.split()
    return float(out[-2]), int(out[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=[100, 400, 1600])
    ap.add_argument("--resolution", type=int, default=512)
    ap.add_argument("--child", nargs=2)
    ap.add_argument("--keep-mb", type=float)
    args = ap.parse_args()
    if args.child:
        child(int(args.child[0]), args.child[1], args.resolution, args.keep_mb)
        return
    with tempfile.TemporaryDirectory() as tmp:
        print(f"{'images':>7} {'Kiln RSS MiB':>13} {'s':>6} {'keep-all RSS MiB':>17} {'s':>6}")
        rows = []
        for n in args.sizes:
            folder = Path(tmp) / f"n{n}"
            make_images(folder, n)
            s_kiln, rss_kiln = run(n, folder, args.resolution, None)
            s_all, rss_all = run(n, folder, args.resolution, 2048)
            rows.append((n, rss_kiln))
            print(f"{n:>7} {rss_kiln / 1024:>13.0f} {s_kiln:>6.1f} {rss_all / 1024:>17.0f} {s_all:>6.1f}", flush=True)
        (n0, r0), (n1, r1) = rows[0], rows[-1]
        print(f"Kiln RSS growth {(r1 - r0) / max(1, n1 - n0):.1f} KiB per image from {n0} to {n1} images")


if __name__ == "__main__":
    main()
