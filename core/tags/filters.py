"""Tag filtering as the guides prune: a small spec applied to comma-separated captions.

Order: replace -> prune (exact, wildcard, regex, category, metadata tags, character preset) -> drop tags
implied by a more specific one -> dedupe -> cap the count (keeping the most confident, or the earliest)
-> the trigger tag first."""
from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass

from .labels import normalise

META_TAGS = frozenset(normalise(t) for t in (
    "translation_request", "translated", "english_commentary", "commentary_request", "commentary",
    "chinese_commentary", "japanese_commentary", "korean_commentary", "check_commentary", "watermark",
    "signature", "artist_name", "twitter_username", "patreon_username", "web_address", "dated", "copyright_name",
    "character_name", "logo", "username", "jpeg_artifacts", "bad_id", "bad_pixiv_id", "bad_twitter_id",
    "md5_mismatch", "highres", "absurdres", "lowres", "duplicate", "third-party_edit", "revision"))

COLOURS = ("aqua", "black", "blonde", "blue", "brown", "green", "grey", "gray", "orange", "pink", "purple", "red",
           "silver", "white", "yellow", "light_brown", "light_blue", "light_green", "light_purple", "dark_blue",
           "dark_green", "platinum_blonde", "multicolored", "two-tone", "gradient", "streaked", "heterochromia")
EYE_COLOUR = re.compile(r"^(%s) eyes$|^heterochromia$" % "|".join(re.escape(normalise(c)) for c in COLOURS))
HAIR_COLOUR = re.compile(r"^(%s) hair$" % "|".join(re.escape(normalise(c)) for c in COLOURS))
HAIR_LENGTH = re.compile(r"^(very short|short|medium|long|very long|absurdly long) hair$")


@dataclass(frozen=True)
class TagFilterSpec:
    remove: tuple[str, ...] = ()              # exact tags, '*' wildcards, or 're:<regex>'
    remove_categories: tuple[str, ...] = ()   # general, character, copyright, artist, meta (needs the tag CSV)
    remove_meta: bool = False                 # the built-in metadata-tag list
    character_preset: bool = False            # prune eye colour, hair colour, hair length; keep hairstyle
    trigger: str = ""                         # inserted first (keep_tokens=1 keeps it there)
    replace: tuple[tuple[str, str], ...] = () # e.g. (("red_dress", "zyxdress"),)
    dedupe: bool = True
    drop_implied: bool = False                # 'shirt' goes when 'white shirt' is there
    max_tags: int = 0                         # 0: no cap


def split(caption: str) -> list[str]:
    return [t.strip() for t in caption.split(",") if t.strip()]


def _matches(tag: str, pattern: str) -> bool:
    if pattern.startswith("re:"):
        return re.search(pattern[3:], tag) is not None or re.search(pattern[3:], tag.replace(" ", "_")) is not None
    n, p = normalise(tag), normalise(pattern)
    return fnmatch.fnmatchcase(n, p) if any(c in p for c in "*?[") else n == p


def apply_filter(caption: str, spec: TagFilterSpec, categories: dict[str, str] | None = None,
                 scores: dict[str, float] | None = None) -> str:
    tags = split(caption)
    if spec.replace:
        table = {normalise(a): b for a, b in spec.replace}
        tags = [table.get(normalise(t), t) for t in tags]
    kept = []
    for t in tags:
        n = normalise(t)
        if any(_matches(t, p) for p in spec.remove):
            continue
        if spec.remove_meta and n in META_TAGS:
            continue
        if spec.remove_categories and categories is not None and categories.get(n) in spec.remove_categories:
            continue
        if spec.character_preset and (EYE_COLOUR.match(n) or HAIR_COLOUR.match(n) or HAIR_LENGTH.match(n)):
            continue
        kept.append(t)
    if spec.drop_implied:
        norm = [normalise(t) for t in kept]
        kept = [t for t, n in zip(kept, norm) if not any(o != n and o.endswith(" " + n) for o in norm)]
    if spec.dedupe:
        seen, unique = set(), []
        for t in kept:
            if normalise(t) not in seen:
                seen.add(normalise(t))
                unique.append(t)
        kept = unique
    trigger = spec.trigger.strip()
    if trigger:
        kept = [t for t in kept if normalise(t) != normalise(trigger)]
    if spec.max_tags and len(kept) > spec.max_tags:
        if scores:
            order = sorted(range(len(kept)), key=lambda i: -scores.get(normalise(kept[i]), 0.0))[: spec.max_tags]
            kept = [kept[i] for i in sorted(order)]
        else:
            kept = kept[: spec.max_tags]
    return ", ".join(([trigger] if trigger else []) + kept)


def frequency(captions: list[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for c in captions:
        for t in set(split(c)):
            counts[t] = counts.get(t, 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def frequency_text(counts: dict[str, int], top: int = 50) -> str:
    return "\n".join(f"{n:5d}  {t}" for t, n in list(counts.items())[:top]) or "(no tags)"
