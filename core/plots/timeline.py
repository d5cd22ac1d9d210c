"""Samples over time: each sample prompt's images across the sample steps as one labelled grid (PIL only).

Rows are prompts, columns are sample steps, each column headed by its step, so over-training shows as a
row that drifts away from the dataset. The Train node writes it and the Sample Timeline node outputs it."""
from __future__ import annotations

import re
import textwrap
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from ..data.images import to_float, to_uint8

# The Train node's sample files: kiln_samples/<run folder name: output name, or <name>_run2...>/step000030_01.png
# (step 30, prompt 1).
SAMPLE_NAME = re.compile(r"^step(\d+)_(\d+)\.png$")


@dataclass(frozen=True)
class TimelineEntry:
    step: int
    prompt: int
    image: np.ndarray    # [H, W, 3] float in 0..1


def sample_file_name(step: int, prompt: int) -> str:
    return f"step{step:06d}_{prompt:02d}.png"


def parse_sample_file(name: str) -> tuple[int, int] | None:
    """(step, prompt index) from a sample file's name, or None for other files."""
    m = SAMPLE_NAME.match(name)
    return (int(m.group(1)), int(m.group(2))) if m else None


def timeline_image(entries: list[TimelineEntry], prompts: list[str] | None = None, cell: int = 160,
                   max_columns: int = 12) -> np.ndarray:
    """[H, W, 3] float32: one row per prompt, one column per sample step (the latest max_columns steps,
    always keeping the first), each cell the image scaled to fit, with step labels on top and the prompt
    text at the start of each row."""
    prompts = list(prompts or [])
    steps = sorted({e.step for e in entries})
    if len(steps) > max_columns > 1:
        steps = steps[:1] + steps[-(max_columns - 1):]
    rows = sorted({e.prompt for e in entries}) or [0]
    label_w, head_h, pad = 150, 22, 4
    width = label_w + max(1, len(steps)) * (cell + pad) + pad
    height = head_h + len(rows) * (cell + pad) + pad
    img = Image.new("RGB", (width, height), (30, 30, 30))
    d = ImageDraw.Draw(img)
    if not entries:
        d.text((pad, head_h), "no samples yet: connect Kiln Sample Prompts to the Train node", fill=(200, 200, 200))
        return to_float(img)
    at = {(e.step, e.prompt): e.image for e in entries}
    for c, step in enumerate(steps):
        d.text((label_w + pad + c * (cell + pad) + 4, 5), f"step {step}", fill=(230, 230, 230))
    for r, prompt in enumerate(rows):
        y = head_h + pad + r * (cell + pad)
        text = prompts[prompt] if prompt < len(prompts) else f"prompt {prompt + 1}"
        # Wrapped at word boundaries (a word longer than a line is still cut), at most six lines.
        for line_no, line in enumerate(textwrap.wrap(text, 22)[:6]):
            d.text((pad, y + 4 + 14 * line_no), line, fill=(200, 200, 200))
        for c, step in enumerate(steps):
            x = label_w + pad + c * (cell + pad)
            d.rectangle((x, y, x + cell - 1, y + cell - 1), fill=(17, 17, 17))
            arr = at.get((step, prompt))
            if arr is None:
                continue
            tile = Image.fromarray(to_uint8(arr))
            tile.thumbnail((cell, cell), Image.Resampling.LANCZOS if tile.width > cell else Image.Resampling.NEAREST)
            if tile.width < cell and tile.height < cell:   # tiny samples: scale up with hard edges
                k = cell / max(tile.width, tile.height)
                tile = tile.resize((max(1, round(tile.width * k)), max(1, round(tile.height * k))),
                                   Image.Resampling.NEAREST)
            img.paste(tile, (x + (cell - tile.width) // 2, y + (cell - tile.height) // 2))
    return to_float(img)


def load_entries(records) -> list[TimelineEntry]:
    """records: the training-time samples (core.train.specs.SampleRecord: step, prompt, file) of a Train node's
    report; files that are gone (a cleaned output folder) are skipped rather than failing the graph."""
    out = []
    for rec in records:
        path = Path(rec.file)
        if not path.is_file():
            continue
        with Image.open(path) as im:
            out.append(TimelineEntry(int(rec.step), int(rec.prompt), to_float(im.convert("RGB"))))
    return out
