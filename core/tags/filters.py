"""Tag filtering as the guides prune: a small spec applied to comma-separated captions, as a pure function
on caption strings (so a dataset can map it over its captions).

Order: replace -> prune (exact, wildcard, regex, category, metadata tags, preset) -> drop tags implied by a
more specific one -> dedupe -> cap the count (keeping the most confident, or the earliest) -> trigger first."""
from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass
from typing import Mapping

from .frequency import frequency, split  # noqa: F401  (frequency lived here first; older imports use it)
from .labels import normalise
from .prune_rules import preset_prunes

META_TAGS = frozenset(normalise(t) for t in (
    "translation_request", "translated", "english_commentary", "commentary_request", "commentary",
    "chinese_commentary", "japanese_commentary", "korean_commentary", "check_commentary", "watermark",
    "signature", "artist_name", "twitter_username", "patreon_username", "web_address", "dated", "copyright_name",
    "character_name", "logo", "username", "jpeg_artifacts", "bad_id", "bad_pixiv_id", "bad_twitter_id",
    "md5_mismatch", "highres", "absurdres", "incredibly_absurdres", "lowres", "duplicate", "third-party_edit",
    "revision", "artist_request", "character_request", "copyright_request", "source_request", "tagme",
    "commission", "skeb_commission", "pixiv_commission", "paid_reward_available", "sample_watermark"))

CATEGORIES = ("general", "character", "copyright", "artist", "meta", "rating")


@dataclass(frozen=True)
class TagFilterSpec:
    remove: tuple[str, ...] = ()              # exact tags, '*' wildcards, or 're:<regex>'
    remove_categories: tuple[str, ...] = ()   # general, character, copyright, artist, meta, rating (needs the CSV)
    remove_meta: bool = False                 # the built-in metadata-tag list
    character_preset: bool = False            # prune eye colour, hair colour, hair length; keep hairstyle
    trigger: str = ""                         # inserted first (keep_tokens=1 keeps it there)
    replace: tuple[tuple[str, str], ...] = () # e.g. (("red_dress", "zyxdress"),)
    dedupe: bool = True
    drop_implied: bool = False                # 'shirt' goes when 'white shirt' is there
    max_tags: int = 0                         # 0: no cap

    def __post_init__(self):
        unknown = [c for c in self.remove_categories if c not in CATEGORIES]
        if unknown:
            raise ValueError(f"tag categories {unknown}: use {', '.join(CATEGORIES)}")
        for p in self.remove:
            if p.startswith("re:"):
                try:
                    re.compile(p[3:])
                except re.error as exc:
                    raise ValueError(f"tag pattern {p!r} is not a valid regex: {exc}") from None


def parse_patterns(text: str) -> tuple[str, ...]:
    """Comma- or line-separated tags and wildcards; a line starting 're:' is one regex, commas and all."""
    out: list[str] = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("re:"):
            out.append(line)
        else:
            out += [t.strip() for t in line.split(",") if t.strip()]
    return tuple(out)


def parse_replace(text: str) -> tuple[tuple[str, str], ...]:
    """'old=new' pairs, comma- or line-separated."""
    pairs = []
    for part in parse_patterns(text):
        old, sep, new = part.partition("=")
        if not sep or not old.strip():
            raise ValueError(f"replace entry {part!r} is not old=new (e.g. red_dress=zyxdress)")
        pairs.append((old.strip(), new.strip()))
    return tuple(pairs)


def _matches(tag: str, pattern: str) -> bool:
    if pattern.startswith("re:"):
        return re.search(pattern[3:], tag) is not None or re.search(pattern[3:], tag.replace(" ", "_")) is not None
    n, p = normalise(tag), normalise(pattern)
    return fnmatch.fnmatchcase(n, p) if any(c in p for c in "*?[") else n == p


def apply_filter(caption: str, spec: TagFilterSpec, categories: Mapping[str, str] | None = None,
                 scores: Mapping[str, float] | None = None) -> str:
    """``categories``: normalised tag -> category name (from the tag CSV); ``scores``: normalised tag ->
    confidence (from the tagger). A replaced tag keeps the score of the tag it replaced; tags the tagger did
    not score (written by a person) rank above all scored ones when capping."""
    table = {normalise(a): b for a, b in spec.replace}
    tags = []   # (tag, confidence or None)
    for t in split(caption):
        score = scores.get(normalise(t)) if scores else None
        tags.append((table.get(normalise(t), t), score))
    kept = []
    for t, score in tags:
        n = normalise(t)
        if any(_matches(t, p) for p in spec.remove):
            continue
        if spec.remove_meta and n in META_TAGS:
            continue
        if spec.remove_categories and categories is not None and categories.get(n) in spec.remove_categories:
            continue
        if spec.character_preset and preset_prunes("character", n):
            continue
        kept.append((t, score))
    if spec.drop_implied:
        # Danbooru's specific tags end with the general one ('white shirt' -> 'shirt', 'evil smile' -> 'smile').
        norm = {normalise(t) for t, _ in kept}
        kept = [(t, s) for t, s in kept if not any(o.endswith(" " + normalise(t)) for o in norm)]
    if spec.dedupe:
        seen, unique = set(), []
        for t, s in kept:
            if normalise(t) not in seen:
                seen.add(normalise(t))
                unique.append((t, s))
        kept = unique
    trigger = spec.trigger.strip()
    if trigger:
        kept = [(t, s) for t, s in kept if normalise(t) != normalise(trigger)]
    if spec.max_tags and len(kept) > spec.max_tags:
        if scores:
            rank = sorted(range(len(kept)), key=lambda i: -(kept[i][1] if kept[i][1] is not None else 2.0))
            keep = set(rank[: spec.max_tags])
            kept = [k for i, k in enumerate(kept) if i in keep]
        else:
            kept = kept[: spec.max_tags]
    return ", ".join(([trigger] if trigger else []) + [t for t, _ in kept])
