"""Step arithmetic and the per-epoch plan: which image, bucket, crop and flip each batch holds.

Step arithmetic (kohya's): an epoch is every training image x its repeats, plus - when there are
regularization images - as many regularization samples again (kohya balances them to the training count:
cycled when there are fewer, a per-epoch shuffled subset when there are more; each weighted by
``prior_loss_weight`` in the loss). Batches never mix buckets (nor clip lengths), so each bucket rounds UP on its own:
steps per epoch = sum over buckets of ceil(samples in bucket / batch); total = that x epochs. With one
bucket this is ceil(images x repeats [x 2 with reg] / batch) x epochs.

``images`` below is a dataset's tuple of ImageEntry (core/data/dataset.py)."""
from __future__ import annotations

import math
import random
from collections import Counter
from dataclasses import dataclass

from .buckets import scaled_size
from .config import DatasetConfig


@dataclass(frozen=True)
class SampleRef:
    index: int
    bucket: tuple[int, int]
    crop: tuple[int, int]
    flip: bool
    is_reg: bool
    aug_seed: int = 0       # colour augmentation draw (only used when color_aug is on)


def batch_key(entry) -> tuple:
    """What a batch must share: the bucket, and for a clip window its frame count (w, h, frames)."""
    return (*entry.bucket, len(entry.frames)) if entry.frames else entry.bucket


def train_samples(images) -> int:
    return sum(e.repeats for e in images if not e.is_reg)


def reg_pool(images) -> list[int]:
    """Each regularization image's index, once per repeat."""
    return [i for i, e in enumerate(images) if e.is_reg for _ in range(e.repeats)]


def samples_per_epoch(images) -> int:
    """Training samples (images x repeats), plus as many regularization samples when a reg folder is
    given (kohya balances reg samples to the training count, cycling them when there are fewer)."""
    n = train_samples(images)
    return n * 2 if reg_pool(images) else n


def reg_quota(images) -> Counter:
    """Regularization samples per bucket in every epoch: fixed (from one seeded draw of the balanced
    pool), so every epoch has the same number of steps; which reg images fill them varies by epoch."""
    reg = reg_pool(images)
    quota = Counter()
    if reg:
        random.Random(0).shuffle(reg)
        for k in range(train_samples(images)):
            quota[batch_key(images[reg[k % len(reg)]])] += 1
    return quota


def bucket_counts(images, quota: Counter) -> Counter:
    """Samples per bucket in an epoch (the same in every epoch)."""
    counts = Counter()
    for e in images:
        if not e.is_reg:
            counts[batch_key(e)] += e.repeats
    counts.update(quota)
    return counts


def steps_per_epoch(counts: Counter, batch_size: int) -> int:
    """Batches never mix buckets, so each bucket rounds up on its own (as kohya's)."""
    if batch_size < 1:
        raise ValueError(f"batch size must be at least 1 (got {batch_size})")
    return sum(math.ceil(c / batch_size) for c in counts.values())


def entry_scaled_size(entry, bucket: tuple[int, int], cfg: DatasetConfig) -> tuple[int, int]:
    """The size ``entry`` is scaled to before the crop into ``bucket``."""
    return scaled_size(entry.size, bucket, cfg.bucket_no_upscale, cfg.resolution, cfg.bucket_reso_steps)


def epoch_plan(images, cfg: DatasetConfig, quota: Counter, epoch: int, batch_size: int,
               seed: int) -> list[list[SampleRef]]:
    """Batches for one epoch, each from one bucket, in a shuffled order; deterministic in (epoch, seed)."""
    if batch_size < 1:
        raise ValueError(f"batch size must be at least 1 (got {batch_size})")
    rng = random.Random(f"{seed}:{epoch}")
    samples = [i for i, e in enumerate(images) if not e.is_reg for _ in range(e.repeats)]
    for bucket, count in sorted(quota.items()):
        pool = [i for i in reg_pool(images) if batch_key(images[i]) == bucket]
        rng.shuffle(pool)
        samples += [pool[k % len(pool)] for k in range(count)]
    by_bucket: dict[tuple, list[SampleRef]] = {}
    for i in samples:
        e = images[i]
        sw, sh = entry_scaled_size(e, e.bucket, cfg)
        if cfg.random_crop:
            crop = (rng.randint(0, sw - e.bucket[0]), rng.randint(0, sh - e.bucket[1]))
        else:
            crop = ((sw - e.bucket[0]) // 2, (sh - e.bucket[1]) // 2)
        flip = cfg.flip_aug and rng.random() < 0.5
        by_bucket.setdefault(batch_key(e), []).append(
            SampleRef(i, e.bucket, crop, flip, e.is_reg, rng.randrange(2 ** 31) if cfg.color_aug else 0))
    batches = []
    for bucket in sorted(by_bucket):
        refs = by_bucket[bucket]
        rng.shuffle(refs)
        batches += [refs[k:k + batch_size] for k in range(0, len(refs), batch_size)]
    rng.shuffle(batches)
    return batches
