"""A picture of a dataset: a few images per bucket, as training will see them (cropped, at the bucket's
aspect), with their captions drawn underneath."""
from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ..data.dataset import KilnDataset
from ..data.plan import SampleRef
from ..data.images import to_float, to_uint8

_BG = (16, 16, 16)
_TEXT = (232, 232, 232)


def _font(size: int):
    try:
        return ImageFont.load_default(size=size)   # scalable when Pillow has FreeType
    except TypeError:   # older Pillow: the fixed bitmap font
        return ImageFont.load_default()


def _wrap(draw: ImageDraw.ImageDraw, text: str, font, width: int, max_lines: int) -> list[str]:
    lines, line = [], ""
    for word in text.split():
        trial = f"{line} {word}".strip()
        if draw.textlength(trial, font=font) <= width or not line:
            line = trial
        else:
            lines.append(line)
            line = word
        if len(lines) == max_lines:
            break
    if line and len(lines) < max_lines:
        lines.append(line)
    if len(lines) == max_lines and " ".join(lines) != " ".join(text.split()):
        lines[-1] = lines[-1].rstrip(",. ") + " ..."
    return lines


def _cell(image: Image.Image, caption: str, tile: int, text_lines: int, font, line_h: int) -> Image.Image:
    cell = Image.new("RGB", (tile, tile + text_lines * line_h + 6), _BG)
    image = image.copy()
    image.thumbnail((tile - 6, tile - 6), Image.LANCZOS)   # a small gap between neighbours
    cell.paste(image, ((tile - image.width) // 2, (tile - image.height) // 2))
    draw = ImageDraw.Draw(cell)
    for i, line in enumerate(_wrap(draw, caption, font, tile - 8, text_lines)):
        draw.text((4, tile + 3 + i * line_h), line, fill=_TEXT, font=font)
    return cell


def preview_refs(dataset: KilnDataset, per_bucket: int, seed: int = 0) -> dict[tuple[int, int], list[SampleRef]]:
    """Up to ``per_bucket`` distinct training images per bucket (regularization images after them)."""
    chosen: dict[tuple[int, int], list[SampleRef]] = {}
    refs = [r for batch in dataset.epoch_plan(0, 1, seed) for r in batch]
    for ref in sorted(refs, key=lambda r: r.is_reg):
        group = chosen.setdefault(ref.bucket, [])
        if len(group) < per_bucket and all(r.index != ref.index for r in group):
            group.append(ref)
    return dict(sorted(chosen.items()))


def preview_grid(dataset: KilnDataset, per_bucket: int = 4, tile: int = 192, text_lines: int = 3,
                 seed: int = 0) -> np.ndarray:
    """float32 [H, W, 3] in 0..1: one row per bucket (labelled), ``per_bucket`` images in each, each with
    the caption a step would use (prefix/suffix applied)."""
    font = _font(max(10, tile // 14))
    line_h = max(12, tile // 12)
    label_h = line_h + 6
    rows = []
    for bucket, refs in preview_refs(dataset, per_bucket, seed).items():
        cells = []
        for ref in refs:
            image = Image.fromarray(to_uint8(dataset.load_pixels(ref).numpy()))
            text = ("[reg] " if ref.is_reg else "") + (dataset.caption(ref, seed) or "(empty caption)")
            cells.append(_cell(image, text, tile, text_lines, font, line_h))
        row = Image.new("RGB", (tile * per_bucket, label_h + cells[0].height), _BG)
        ImageDraw.Draw(row).text((4, 3), f"bucket {bucket[0]}x{bucket[1]}", fill=(255, 200, 90), font=font)
        for i, cell in enumerate(cells):
            row.paste(cell, (i * tile, label_h))
        rows.append(row)
    grid = Image.new("RGB", (tile * per_bucket, sum(r.height for r in rows)), _BG)
    y = 0
    for row in rows:
        grid.paste(row, (0, y))
        y += row.height
    return to_float(grid)
