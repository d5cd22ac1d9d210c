"""Per-step caption processing: kohya's shuffle with keep_tokens (or a keep-tokens separator), caption and
tag dropout, prefix/suffix.

Order per step: whole-caption dropout (returns "" - the unconditional step, prefix included, as kohya);
split into a fixed head, the flexible middle and (with a separator used twice, ``a ||| b, c ||| d``) a fixed
tail; per-tag dropout and shuffle touch only the middle; then the prefix and suffix (the trigger word) go
around the result, outside the shuffle, so a trigger in the prefix is never moved or dropped."""
from __future__ import annotations

import random

from .config import DatasetConfig


def split_tags(caption: str) -> list[str]:
    return [t.strip() for t in caption.split(",") if t.strip()]


def _join(*parts: str) -> str:
    return ", ".join(p for p in parts if p)


def process_caption(caption: str, cfg: DatasetConfig, rng: random.Random) -> str:
    if cfg.caption_dropout_rate and rng.random() < cfg.caption_dropout_rate:
        return ""
    sep = cfg.keep_tokens_separator
    tail: list[str] = []
    if sep and sep in caption:
        head_text, _, rest = caption.partition(sep)
        if sep in rest:
            rest, _, tail_text = rest.partition(sep)
            tail = split_tags(tail_text.replace(sep, ","))
        fixed, flex = split_tags(head_text), split_tags(rest)
    else:
        tags = split_tags(caption)
        fixed, flex = tags[: cfg.keep_tokens], tags[cfg.keep_tokens:]
    if cfg.tag_dropout_rate:
        flex = [t for t in flex if rng.random() >= cfg.tag_dropout_rate]
    if cfg.shuffle_caption:
        rng.shuffle(flex)
    prefix = cfg.caption_prefix.strip().strip(",").strip()
    suffix = cfg.caption_suffix.strip().strip(",").strip()
    return _join(prefix, ", ".join(fixed + flex + tail), suffix)


def captions_vary(cfg: DatasetConfig) -> bool:
    """Whether the same image can get a different caption on another step."""
    return bool((cfg.shuffle_caption or cfg.caption_dropout_rate or cfg.tag_dropout_rate))
