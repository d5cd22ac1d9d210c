"""The tag list of a tagger: WD14's and pixai's selected_tags.csv (tag_id,name,category,count), cl_tagger's
tag_mapping.json and Camie's metadata .json."""
from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

# Danbooru categories as the taggers' CSVs use them.
CATEGORY_NAMES = {0: "general", 1: "artist", 3: "copyright", 4: "character", 5: "meta", 9: "rating"}
CATEGORY_IDS = {v: k for k, v in CATEGORY_NAMES.items()}
# The JSON tag files name categories; the ones without a Danbooru id count as meta tags (pruned with meta).
CATEGORY_ALIASES = {"series": "copyright", "year": "meta", "quality": "meta", "model": "meta"}


def category_id(name: str) -> int:
    key = str(name).strip().lower()
    return CATEGORY_IDS.get(CATEGORY_ALIASES.get(key, key), CATEGORY_IDS["meta"])

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
    kind: str = "csv"   # csv | cl_tagger | camie: which tag file it came from (the model format follows)

    @classmethod
    def from_file(cls, path: str | Path) -> "Labels":
        """A tag CSV, cl_tagger's tag_mapping.json or Camie's metadata .json, told apart by their content."""
        path = Path(path)
        if path.suffix.lower() != ".json":
            return cls.from_csv(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if isinstance(data, dict) and "dataset_info" in data:   # Camie
                mapping, kind = data["dataset_info"]["tag_mapping"], "camie"
            else:
                mapping, kind = data, "cl_tagger"
            if isinstance(mapping, dict) and "idx_to_tag" in mapping:
                idx_to_tag, tag_to_cat = mapping["idx_to_tag"], mapping.get("tag_to_category", {})
                rows = sorted((int(i), t, tag_to_cat.get(t, "general")) for i, t in idx_to_tag.items())
            else:   # cl_tagger: {"0": {"tag": ..., "category": ...}, ...}
                rows = sorted((int(i), v["tag"], v.get("category", "general")) for i, v in mapping.items())
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"{path}: not a tagger tag file (cl_tagger's tag_mapping.json or Camie's metadata "
                             f".json): {exc}") from exc
        if not rows:
            raise ValueError(f"{path}: the tag list is empty")
        if [i for i, _, _ in rows] != list(range(len(rows))):
            raise ValueError(f"{path}: tag indices are not 0..{len(rows) - 1}; use the tag file that came with "
                             "the model")
        return cls(tuple(t for _, t, _ in rows), tuple(category_id(c) for _, _, c in rows), kind)

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
