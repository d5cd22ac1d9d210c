"""The tag list of a WD14-style tagger (selected_tags.csv: tag_id,name,category,count)."""
from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

# Danbooru categories as the taggers' CSVs use them.
CATEGORY_NAMES = {0: "general", 1: "artist", 3: "copyright", 4: "character", 5: "meta", 9: "rating"}
CATEGORY_IDS = {v: k for k, v in CATEGORY_NAMES.items()}

# Tags whose underscores are part of the face, not word separators.
KAOMOJI = {"0_0", "(o)_(o)", "+_+", "+_-", "._.", "<o>_<o>", "<|>_<|>", "=_=", ">_<", "3_3", "6_9", ">_o", "@_@",
           "^_^", "o_o", "u_u", "x_x", "|_|", "||_||"}


def display_name(tag: str, replace_underscores: bool = True) -> str:
    if not replace_underscores or tag in KAOMOJI:
        return tag
    return tag.replace("_", " ")


def normalise(tag: str) -> str:
    """For matching user input: case-folded, underscores and spaces alike (kaomoji kept as they are)."""
    tag = tag.strip()
    return tag if tag in KAOMOJI else tag.replace("_", " ").lower()


@dataclass(frozen=True)
class Labels:
    names: tuple[str, ...]
    categories: tuple[int, ...]

    @classmethod
    def from_csv(cls, path: str | Path) -> "Labels":
        path = Path(path)
        try:
            with open(path, newline="", encoding="utf-8") as fh:
                rows = list(csv.DictReader(fh))
            names = tuple(r["name"] for r in rows)
            cats = tuple(int(r["category"]) for r in rows)
        except (OSError, KeyError, ValueError) as exc:
            raise ValueError(f"{path}: not a tagger tag list (needs columns name and category): {exc}") from exc
        if not names:
            raise ValueError(f"{path}: the tag list is empty")
        return cls(names, cats)

    def indices(self, category: int) -> list[int]:
        return [i for i, c in enumerate(self.categories) if c == category]

    def category_of(self) -> dict[str, str]:
        """normalised tag -> category name (for category pruning of existing captions)."""
        return {normalise(n): CATEGORY_NAMES.get(c, str(c)) for n, c in zip(self.names, self.categories)}
