"""The dataset's part of kohya's ``ss_*`` metadata: folders, tag frequencies, buckets and the settings.

``images`` below is a dataset's tuple of ImageEntry (core/data/dataset.py)."""
from __future__ import annotations

import json
from collections import Counter

import numpy as np

from .captions import split_tags
from .config import DatasetConfig


def tag_frequency(images) -> dict[str, dict[str, int]]:
    """kohya's ss_tag_frequency: per folder name, each comma-separated tag (lower-cased) and how many
    images carry it (regularization folders included, as kohya)."""
    freq: dict[str, Counter] = {}
    for e in images:
        freq.setdefault(e.concept, Counter()).update(t.lower() for t in split_tags(e.caption))
    return {k: dict(v.most_common()) for k, v in freq.items()}


def concept_dirs(images, is_reg: bool) -> dict[str, dict]:
    """kohya's ss_dataset_dirs (ss_reg_dataset_dirs with ``is_reg``): per folder name, repeats and images."""
    dirs: dict[str, dict] = {}
    for e in images:
        if e.is_reg == is_reg:
            d = dirs.setdefault(e.concept, {"n_repeats": e.repeats, "img_count": 0})
            d["img_count"] += 1
    return dirs


def bucket_info(images, counts: Counter) -> dict:
    """kohya's ss_bucket_info: {"buckets": {i: {"resolution": [w, h], "count": samples}}, "mean_img_ar_error"}."""
    buckets = {str(i): {"resolution": list(b), "count": counts[b]} for i, b in enumerate(sorted(counts))}
    errors = [abs(e.size[0] / e.size[1] - e.bucket[0] / e.bucket[1]) for e in images]
    return {"buckets": buckets, "mean_img_ar_error": float(np.mean(errors)) if errors else 0.0}


def training_metadata(images, c: DatasetConfig, counts: Counter) -> dict[str, str]:
    """The dataset's ss_* keys, as JSON/str values the way kohya writes them; ``counts`` are the samples
    per bucket in an epoch."""
    return {
        "ss_dataset_dirs": json.dumps(concept_dirs(images, False)),
        "ss_reg_dataset_dirs": json.dumps(concept_dirs(images, True)),
        "ss_tag_frequency": json.dumps(tag_frequency(images)),
        "ss_bucket_info": json.dumps(bucket_info(images, counts)),
        "ss_num_train_images": str(sum(e.repeats for e in images if not e.is_reg)),
        "ss_num_reg_images": str(sum(e.repeats for e in images if e.is_reg)),
        "ss_resolution": f"({c.resolution}, {c.resolution})",
        "ss_enable_bucket": str(c.enable_buckets),
        "ss_min_bucket_reso": str(c.min_bucket_reso),
        "ss_max_bucket_reso": str(c.max_bucket_reso),
        "ss_bucket_no_upscale": str(c.bucket_no_upscale),
        "ss_caption_dropout_rate": str(c.caption_dropout_rate),
        "ss_caption_tag_dropout_rate": str(c.tag_dropout_rate),
        "ss_keep_tokens": str(c.keep_tokens),
        "ss_shuffle_caption": str(c.shuffle_caption),
        "ss_flip_aug": str(c.flip_aug),
        "ss_color_aug": str(c.color_aug),
        "ss_random_crop": str(c.random_crop),
        "ss_prior_loss_weight": str(c.prior_loss_weight),
    }
