"""load_dataset: scan the folders, decode every image once in threads (bounded memory), skip unreadable
ones, warn once per kind of problem, and return the KilnDataset."""
from __future__ import annotations

import logging
import os
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable

from .buckets import make_buckets
from .caption_files import caption_warnings
from .config import DatasetConfig, DatasetError, check_config
from .controls import control_base, paired_controls
from .dataset import ImageEntry, KilnDataset
from .decode import PreparedClip, prepare_or_reason
from .scan import scan

# Scaled images kept in memory after the first decode; beyond this, images are decoded again when used,
# so memory stays bounded however many images there are (the latent cache makes re-decoding rare).
# Counted as Pillow holds RGB: 4 bytes per pixel. Settable with KILN_DATASET_MEMORY_MB or load_dataset's
# keep_bytes.
PREPARED_BYTES = int(float(os.environ.get("KILN_DATASET_MEMORY_MB", "32")) * 1024 ** 2)
PIXEL_BYTES = 4
# An image scaled up by more than this to fill its bucket is worth a warning (it trains blurry).
UPSCALE_WARN = 2.0


def load_dataset(config: DatasetConfig, warn: Callable[[str], None] = logging.warning, workers: int | None = None,
                 progress: Callable[[int, int], None] | None = None,
                 interrupted: Callable[[], None] | None = None, keep_bytes: int | None = None) -> KilnDataset:
    """Find, check and prepare every image (decoded once, in threads). Raises DatasetError when nothing
    usable is there; odd images are converted, unreadable ones skipped with one warning listing them.
    ``progress(done, total)`` is called once per image prepared; ``interrupted()`` may raise to stop."""
    config = check_config(config)
    notes: dict = {}
    train = scan(config.path, config.repeats, False, config, warn, notes)
    reg = scan(config.reg_path, config.reg_repeats, True, config, warn, notes) if config.reg_path.strip() else []
    if config.enable_buckets:
        buckets = make_buckets(config.resolution, config.min_bucket_reso, config.max_bucket_reso,
                               config.bucket_reso_steps) if not config.bucket_no_upscale else []
    else:
        buckets = [(config.resolution, config.resolution)]
    jobs = [(found, False) for found in train] + [(found, True) for found in reg]
    # Edit pairs: every missing control is named here, before any image decodes or any latent is encoded.
    controls = paired_controls([found for found, _ in jobs], control_base(config.controls))
    roots = {False: Path(config.path).expanduser(), True: Path(config.reg_path).expanduser()}
    workers = workers or min(8, 2 * (os.cpu_count() or 1))
    entries, bad, scaled, bad_paths, upscaled = [], [], {}, set(), []
    budget = PREPARED_BYTES if keep_bytes is None else keep_bytes
    with ThreadPoolExecutor(max(1, workers)) as pool:
        # A bounded window of images in flight, consumed in order: only the kept images stay in memory.
        results = _windowed_map(pool, lambda j: prepare_or_reason(j[0].path, config, buckets), jobs, 2 * max(1, workers))
        for done, ((found, is_reg), result, pair) in enumerate(zip(jobs, results, controls), 1):
            if interrupted is not None:
                interrupted()
            if progress is not None:
                progress(done, len(jobs))
            path = found.path
            if isinstance(result, str):
                bad.append(f"{_relative(path, roots[is_reg])} ({result})")
                bad_paths.add(path)
                continue
            if isinstance(result, PreparedClip):
                entries += [ImageEntry(path, found.caption, found.repeats, found.concept, is_reg, result.size,
                                       result.bucket, result.digest, tuple(window)) for window in result.windows]
                continue
            if result.image.width > UPSCALE_WARN * result.size[0] or result.image.height > UPSCALE_WARN * result.size[1]:
                upscaled.append(f"{_relative(path, roots[is_reg])} ({result.size[0]}x{result.size[1]})")
            cost = result.image.width * result.image.height * PIXEL_BYTES
            if cost <= budget:  # keep the scaled image so training never decodes it again
                scaled[len(entries)] = result.image
                budget -= cost
            entries.append(ImageEntry(path, found.caption, found.repeats, found.concept, is_reg, result.size,
                                      result.bucket, result.digest, controls=pair))
    if bad:
        warn(f"Kiln: skipped {len(bad)} unreadable image(s) or clip(s) - fix or remove them: " + "; ".join(bad))
    caption_warnings(notes, config, warn, bad_paths)
    if upscaled:
        warn(f"Kiln: {len(upscaled)} image(s) are scaled up more than {UPSCALE_WARN:g}x to fill their bucket and "
             f"will train blurry: {', '.join(upscaled[:20])}" + (" ..." if len(upscaled) > 20 else "")
             + ". Use larger images, a lower resolution, or bucket_no_upscale.")
    if not any(not e.is_reg for e in entries):
        raise DatasetError(f"no usable training images in {config.path}: all {len(bad)} are unreadable "
                           "(listed in the warning above). Re-export them as PNG or JPEG.")
    return KilnDataset(config, tuple(entries), scaled)


def _windowed_map(pool, fn, items, window: int):
    """``pool.map`` with at most ``window`` results pending (map submits everything at once, and results
    that finish before they are consumed all sit in memory)."""
    pending = deque()
    for item in items:
        pending.append(pool.submit(fn, item))
        if len(pending) >= window:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()


def _relative(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)
