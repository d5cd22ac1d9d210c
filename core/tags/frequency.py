"""Tag frequency tables (how many captions hold each tag) as text and as a bar chart IMAGE."""
from __future__ import annotations

import numpy as np

from ..plots.bars import horizontal_bars
from .labels import normalise


def split(caption: str) -> list[str]:
    return [t.strip() for t in caption.split(",") if t.strip()]


def frequency(captions: list[str]) -> dict[str, int]:
    """tag -> number of captions holding it (spelling variants with _ or space count as one), most first."""
    counts: dict[str, int] = {}
    shown: dict[str, str] = {}
    for c in captions:
        for key, tag in {normalise(t): t for t in split(c)}.items():
            shown.setdefault(key, tag)
            counts[key] = counts.get(key, 0) + 1
    return dict(sorted(((shown[k], n) for k, n in counts.items()), key=lambda kv: (-kv[1], kv[0])))


def frequency_text(counts: dict[str, int], top: int = 50) -> str:
    return "\n".join(f"{n:5d}  {t}" for t, n in list(counts.items())[:top]) or "(no tags)"


def comparison_text(before: list[str], after: list[str], top: int = 50) -> str:
    """Before and after a filter: the counts side by side, and what went."""
    fb, fa = frequency(before), frequency(after)
    after_by_key = {normalise(t): n for t, n in fa.items()}
    gone = [t for t in fb if normalise(t) not in after_by_key]
    added = [t for t in fa if normalise(t) not in {normalise(b) for b in fb}]
    lines = [f"{len(before)} captions: {len(fb)} distinct tags before, {len(fa)} after",
             f"{'before':>6} {'after':>6}  tag"]
    for t, n in list(fb.items())[:top]:
        m = after_by_key.get(normalise(t), 0)
        lines.append(f"{n:6d} {m:6d}  {t}")
    if added:
        lines.append("added: " + ", ".join(f"{t} ({fa[t]})" for t in added[:top]))
    if gone:
        lines.append("pruned: " + ", ".join(gone[:top]))
    return "\n".join(lines)


def comparison_chart(before: list[str], after: list[str], rows: int = 30) -> np.ndarray:
    """Two bar charts side by side (top ``rows`` tags each), [H, W, 3] float32 in 0..1."""
    left = horizontal_bars(frequency(before), f"tag frequency before ({len(before)} captions)", rows=rows)
    right = horizontal_bars(frequency(after), f"tag frequency after ({len(after)} captions)", rows=rows,
                            colour=(200, 110, 40))
    return np.concatenate([left, right], axis=1)


def frequency_chart(captions: list[str], title: str = "tag frequency", rows: int = 30) -> np.ndarray:
    return horizontal_bars(frequency(captions), f"{title} ({len(captions)} captions)", rows=rows)
