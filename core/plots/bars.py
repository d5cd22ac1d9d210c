"""Bar charts (tag frequencies, per-block norms)."""
from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from ..data.images import to_float


def horizontal_bars(values: dict[str, float], title: str, width: int = 640, row: int = 16,
                    colour=(40, 110, 200), rows: int | None = None) -> np.ndarray:
    """``rows`` fixes the height (charts that sit side by side must match)."""
    items = list(values.items())[: rows or None]
    height = 30 + row * max(1, rows or len(items))
    img = Image.new("RGB", (width, height), (255, 255, 255))
    d = ImageDraw.Draw(img)
    d.text((8, 6), title, fill=(20, 20, 20))
    top = max((v for _, v in items), default=1.0) or 1.0
    for i, (label, v) in enumerate(items):
        y = 26 + i * row
        d.text((8, y), label[:28], fill=(40, 40, 40))
        w = (width - 260) * v / top
        d.rectangle((200, y + 2, 200 + w, y + row - 3), fill=colour)
        d.text((206 + w, y), f"{v:g}", fill=(60, 60, 60))
    return to_float(img)


def bar_chart(values: dict[str, float], title: str, width: int = 720, height: int = 320) -> np.ndarray:
    """Vertical bars, one per key, in the given order."""
    img = Image.new("RGB", (width, height), (255, 255, 255))
    d = ImageDraw.Draw(img)
    d.text((10, 6), title, fill=(20, 20, 20))
    if values:
        top = max(values.values()) or 1.0
        bw = (width - 40) / len(values)
        for i, (k, v) in enumerate(values.items()):
            x0 = 20 + i * bw
            h = (height - 70) * v / top
            d.rectangle((x0 + 2, height - 40 - h, x0 + bw - 2, height - 40), fill=(40, 110, 200))
            d.text((x0 + 2, height - 34), k[:6], fill=(40, 40, 40))
    return to_float(img)
