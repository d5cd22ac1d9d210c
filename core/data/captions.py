"""Per-step caption processing: kohya's shuffle with keep_tokens (or a keep-tokens separator), caption and
tag dropout, prefix/suffix."""
from __future__ import annotations

import random

from .config import DatasetConfig


def split_tags(caption: str) -> list[str]:
    return [t.strip() for t in caption.split(",") if t.strip()]


def process_caption(caption: str, cfg: DatasetConfig, rng: random.Random) -> str:
    if cfg.caption_dropout_rate and rng.random() < cfg.caption_dropout_rate:
        return ""
    if cfg.keep_tokens_separator and cfg.keep_tokens_separator in caption:
        fixed_part, _, rest = caption.partition(cfg.keep_tokens_separator)
        fixed, flex = split_tags(fixed_part), split_tags(rest)
    else:
        tags = split_tags(caption)
        fixed, flex = tags[: cfg.keep_tokens], tags[cfg.keep_tokens:]
    if cfg.tag_dropout_rate:
        flex = [t for t in flex if rng.random() >= cfg.tag_dropout_rate]
    if cfg.shuffle_caption:
        rng.shuffle(flex)
    text = ", ".join(fixed + flex)
    if cfg.caption_prefix:
        text = cfg.caption_prefix.strip().rstrip(",") + (", " + text if text else "")
    if cfg.caption_suffix:
        text = (text + ", " if text else "") + cfg.caption_suffix.strip().lstrip(",").strip()
    return text
