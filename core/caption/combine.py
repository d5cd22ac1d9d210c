"""Turning model output into a training caption: cleaning, the trigger word first, and combining tags with
a natural-language caption without repeating anything."""
from __future__ import annotations

import re

from ..tags.labels import normalise

COMBINE_MODES = ("caption only", "tags first", "caption first")


def clean_caption(text: str) -> str:
    """One line: whitespace collapsed, surrounding quotes and spaces stripped (a caption file is one line,
    and a model's line breaks would split it)."""
    text = re.sub(r"\s+", " ", text).strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'":
        text = text[1:-1].strip()
    return text


def split_tags(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def _in_caption(tag: str, caption: str) -> bool:
    """A tag already said by the caption, as whole words (spaces and underscores alike)."""
    words = normalise(tag)
    return bool(words) and re.search(r"(?<!\w)" + re.escape(words) + r"(?!\w)", caption.lower()) is not None


def combine_caption(caption: str, tags: str = "", mode: str = "caption only", trigger: str = "",
                    drop_tags_in_caption: bool = True) -> str:
    """The final caption: ``trigger`` first, then the tags and the caption in the order ``mode`` says.
    Tags are deduplicated (underscores and spaces, case alike), the trigger is never repeated, and with
    ``drop_tags_in_caption`` a tag the caption already says word for word is left out."""
    if mode not in COMBINE_MODES:
        raise ValueError(f"combine mode {mode!r}: use one of {', '.join(COMBINE_MODES)}")
    caption = clean_caption(caption)
    trigger = trigger.strip()
    seen = {normalise(trigger)} if trigger else set()
    if caption and trigger and caption.lower().startswith(trigger.lower()):
        caption = caption[len(trigger):].lstrip(" ,.:;")
    kept = []
    if mode != "caption only":
        for tag in split_tags(tags):
            key = normalise(tag)
            if key in seen or (drop_tags_in_caption and _in_caption(tag, caption)):
                continue
            seen.add(key)
            kept.append(tag)
    parts = [caption] if caption else []
    if kept:
        parts = kept + parts if mode == "tags first" else parts + kept
    if trigger:
        parts.insert(0, trigger)
    return ", ".join(parts)
