"""Paired control images for edit-model LoRAs (Flux Kontext, Qwen-Image-Edit, FLUX.2): the musubi-tuner /
ai-toolkit layout. Beside each image folder, ``control/`` (and ``control_1/``, ``control_2/``, ``control_3/``
for several controls) holds the "before" images, matched to the targets by file stem
(``10_edit/0001.png`` <-> ``10_edit/control/0001.jpg``). The target's caption is the edit instruction.

Controls get the same scale, crop and flip as their target (the same bucket), never colour augmentation."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .config import DatasetError
from .images import UnreadableImage, open_rgb

MAX_CONTROLS = 3
_NUMBERED = re.compile(r"^(?P<base>.+)_(?P<n>[1-9]\d*)$")


def control_names(base: str) -> list[str]:
    """The control folder names for ``base`` ("control"): the plain one, then base_1 .. base_3."""
    base = base.strip().strip("/\\")
    if not base or Path(base).name != base or base in (".", ".."):
        raise DatasetError(f"control folder '{base}' must be a plain folder name beside the images (e.g. 'control'), "
                           "not a path.")
    return [base] + [f"{base}_{n}" for n in range(1, MAX_CONTROLS + 1)]


def control_dirs(image_folder: Path, base: str) -> list[Path]:
    """The control folders present beside ``image_folder``'s images, in order (at most three)."""
    found = [image_folder / n for n in control_names(base) if (image_folder / n).is_dir()]
    if len(found) > MAX_CONTROLS:
        raise DatasetError(f"{image_folder}: {len(found)} control folders ({[p.name for p in found]}); at most "
                           f"{MAX_CONTROLS} controls per image are supported (use '{base}' or '{base}_1'.. "
                           f"'{base}_{MAX_CONTROLS}', not both).")
    return found


def _by_stem(folder: Path) -> dict[str, Path]:
    from .scan import find_images  # scan imports nothing from here; local import keeps the module order free
    stems: dict[str, Path] = {}
    for p in find_images(folder):
        if p.stem in stems:
            raise DatasetError(f"{folder}: two control images share the stem '{p.stem}' ({stems[p.stem].name}, "
                               f"{p.name}); keep one.")
        stems[p.stem] = p
    return stems


def pair_controls(image_folder: Path, images: list[Path], base: str) -> list[tuple[Path, ...]]:
    """Each image's control paths (one per control folder, in folder order). Raises one DatasetError naming
    every image whose control is missing, before anything is encoded. No control folder: empty tuples."""
    dirs = control_dirs(image_folder, base)
    if not dirs:
        return [() for _ in images]
    tables = [_by_stem(d) for d in dirs]
    missing = [f"{img.name} (no {d.name}/{img.stem}.*)" for img in images
               for d, table in zip(dirs, tables) if img.stem not in table]
    if missing:
        raise DatasetError(f"{image_folder}: {len(missing)} control image(s) missing: {', '.join(missing)}. Put a "
                           f"control image with the same file stem in each of {[d.name for d in dirs]}, or move "
                           "the unpaired images out.")
    return [tuple(table[img.stem] for table in tables) for img in images]


def control_pixels(path: Path, scaled: tuple[int, int], crop: tuple[int, int], bucket: tuple[int, int],
                   flip: bool, background=(255, 255, 255)) -> torch.Tensor:
    """float32 [H, W, 3] in 0..1: the control scaled to its target's pre-crop size ``scaled``, cropped at
    ``crop`` to ``bucket`` and flipped like the target, so target and control line up pixel for pixel."""
    try:
        im = open_rgb(path, background, draft_size=scaled)
    except (UnreadableImage, OSError) as exc:
        raise DatasetError(f"{path}: control image unreadable ({exc}); replace or remove it.") from exc
    if im.size != scaled:
        im = im.resize(scaled, Image.LANCZOS, reducing_gap=2.0)
    x, y = crop
    im = im.crop((x, y, x + bucket[0], y + bucket[1]))
    if flip:
        im = im.transpose(Image.FLIP_LEFT_RIGHT)
    return torch.from_numpy(np.ascontiguousarray(np.asarray(im, dtype=np.float32) / 255.0))
