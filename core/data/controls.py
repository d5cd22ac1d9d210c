"""Paired control images for edit-model LoRAs (Flux Kontext, Qwen-Image-Edit, FLUX.2): the musubi-tuner /
ai-toolkit layout. Beside each image folder, ``control/`` (and ``control_1/``, ``control_2/``, ``control_3/``
for several controls) holds the "before" images, matched to the targets by file stem
(``10_edit/0001.png`` <-> ``10_edit/control/0001.jpg``). The target's caption is the edit instruction.

Controls get the same scale, crop and flip as their target (the same bucket), never colour augmentation."""
from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .config import DatasetError
from .images import UnreadableImage, open_rgb

MAX_CONTROLS = 3
NONE = "none"
AUTO = "auto"            # the musubi-tuner / ai-toolkit name: control/, control_1/ ...
AUTO_BASE = "control"

# control_resolution: "target" cuts each control exactly like its target (its bucket); a number N gives the control
# ~N x N pixels at the target's aspect (musubi-tuner's control_resolution); "family" is the edit family's own reference
# size, resolved when the model is known: Qwen-Image-Edit's TextEncodeQwenImageEditPlus scales each reference to
# ~1024 x 1024 pixels and Kontext's FluxKontextImageScale to its ~1 Mpx sizes; FLUX.2 takes them at the size given.
TARGET, FAMILY = "target", "family"
FAMILY_CONTROL_SIDE = {"qwen-image": 1024, "flux1-dev": 1024}
CONTROL_MULTIPLE = 16    # control sides: whole latent patches (8x VAE, 2x2 patches) for every edit family


@dataclass(frozen=True)
class Control:
    """One control image of a sample: a file (``path``) or a picture from the graph (``image``, from Load
    Dataset's control_images input); ``digest`` identifies its content for the latent cache."""
    source: str                   # the file path, or "control_images[k]" for a picture from the graph
    digest: str
    path: Path | None = None
    image: Image.Image | None = field(default=None, compare=False, repr=False)


def control_base(setting: str) -> str | None:
    """The control folder base name a Load Dataset ``controls`` setting names (None for "none")."""
    text = (setting or "").strip()
    if not text or text.lower() == NONE:
        return None
    return AUTO_BASE if text.lower() == AUTO else control_names(text)[0]


def file_control(path: Path) -> Control:
    return Control(str(path), hashlib.sha1(path.read_bytes()).hexdigest(), path=path)


def image_control(pixels: torch.Tensor, k: int) -> Control:
    """A control from a graph IMAGE ([H, W, 3] floats in 0..1), kept as an 8-bit RGB picture."""
    arr = (pixels[..., :3].float().clamp(0, 1).cpu().numpy() * 255.0).round().astype(np.uint8)
    return Control(f"control_images[{k}]", hashlib.sha1(arr.tobytes() + str(arr.shape).encode()).hexdigest(),
                   image=Image.fromarray(np.ascontiguousarray(arr), "RGB"))
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


def paired_controls(found: list, base: str | None) -> list[tuple[Control, ...]]:
    """Each found image's controls (``found``: core.data.scan.FoundImage, any folders), paired per folder; one
    DatasetError naming every image whose control is missing across all folders, before anything decodes."""
    if base is None:
        return [() for _ in found]
    from .clips import is_clip
    by_folder: dict[Path, list[int]] = {}
    for i, f in enumerate(found):
        by_folder.setdefault(f.path.parent, []).append(i)
    out: list[tuple[Control, ...]] = [() for _ in found]
    errors = []
    for folder, idx in by_folder.items():
        if not control_dirs(folder, base):
            continue
        clips = [found[i].path.name for i in idx if is_clip(found[i].path)]
        if clips:
            raise DatasetError(f"{folder}: control folders pair with still images only, and {clips[:5]} are video "
                               "clips; move the clips to a folder without controls.")
        try:
            pairs = pair_controls(folder, [found[i].path for i in idx], base)
        except DatasetError as exc:
            errors.append(str(exc))
            continue
        for i, pair in zip(idx, pairs):
            out[i] = tuple(file_control(p) for p in pair)
    if errors:
        raise DatasetError(" ".join(errors))
    counts = {len(c) for c in out}
    if 0 in counts and len(counts) > 1:
        lone = sorted({str(found[i].path.parent) for i, c in enumerate(out) if not c})
        raise DatasetError(f"controls '{base}': some folders have control folders and {lone} have none; every image "
                           f"of an edit dataset needs its control (add a '{base}' folder there or leave them out).")
    if len(counts - {0}) > 1:
        raise DatasetError(f"controls '{base}': folders hold different numbers of controls ({sorted(counts)}); give "
                           "every folder the same control folders, so each batch has the same references.")
    return out


def control_side(setting: str) -> int | None:
    """The side N of a control_resolution of N x N pixels; None for "target" (and an unresolved "family")."""
    text = str(setting or TARGET).strip().lower()
    if text in ("", TARGET, FAMILY):
        return None
    try:
        side = int(text)
    except ValueError:
        side = 0
    if not 64 <= side <= 8192:
        raise DatasetError(f"control_resolution {setting!r} not understood: use 'target' (controls cut like their "
                           "target), 'family' (the edit model's own reference size) or a side in pixels from 64 to "
                           "8192 (1024: ~1024 x 1024 pixels at the target's aspect).")
    return side


def family_control_resolution(setting: str, family: str | None) -> str:
    """control_resolution with "family" replaced by the family's reference side (or "target" where it has none)."""
    if str(setting or "").strip().lower() != FAMILY:
        return setting
    side = FAMILY_CONTROL_SIDE.get(family or "")
    return str(side) if side else TARGET


def control_size(bucket: tuple[int, int], side: int | None) -> tuple[int, int]:
    """A control's pixel size for a target ``bucket``: the bucket itself, or ~side x side pixels at the bucket's aspect
    (sides multiples of CONTROL_MULTIPLE)."""
    if side is None:
        return tuple(bucket)
    scale = math.sqrt(side * side / (bucket[0] * bucket[1]))
    return tuple(max(CONTROL_MULTIPLE, round(b * scale / CONTROL_MULTIPLE) * CONTROL_MULTIPLE) for b in bucket)


def control_cut(scaled: tuple[int, int], crop: tuple[int, int], bucket: tuple[int, int],
                size: tuple[int, int]) -> tuple[tuple[int, int], tuple[int, int]]:
    """The target's cut (scaled to ``scaled``, cropped at ``crop`` to ``bucket``) for a control of ``size``: the same
    crop box, scaled by size / bucket. Returns the control's pre-crop size and crop offset."""
    if tuple(size) == tuple(bucket):
        return tuple(scaled), tuple(crop)
    fx, fy = size[0] / bucket[0], size[1] / bucket[1]
    pre = (max(size[0], round(scaled[0] * fx)), max(size[1], round(scaled[1] * fy)))
    return pre, (min(round(crop[0] * fx), pre[0] - size[0]), min(round(crop[1] * fy), pre[1] - size[1]))


def control_pixels(path: Path | Control, scaled: tuple[int, int], crop: tuple[int, int], bucket: tuple[int, int],
                   flip: bool, background=(255, 255, 255), size: tuple[int, int] | None = None) -> torch.Tensor:
    """float32 [H, W, 3] in 0..1: the control scaled to its target's pre-crop size ``scaled``, cropped at
    ``crop`` to ``bucket`` and flipped like the target, so target and control line up pixel for pixel; with ``size``
    (another control size) the same crop box, scaled to give ``size``."""
    if size is not None:
        scaled, crop = control_cut(scaled, crop, bucket, size)
        bucket = tuple(size)
    if isinstance(path, Control) and path.image is not None:
        im = path.image
    else:
        file = path.path if isinstance(path, Control) else path
        try:
            im = open_rgb(file, background, draft_size=scaled)
        except (UnreadableImage, OSError) as exc:
            raise DatasetError(f"{file}: control image unreadable ({exc}); replace or remove it.") from exc
    if im.size != scaled:
        im = im.resize(scaled, Image.LANCZOS, reducing_gap=2.0)
    x, y = crop
    im = im.crop((x, y, x + bucket[0], y + bucket[1]))
    if flip:
        im = im.transpose(Image.FLIP_LEFT_RIGHT)
    return torch.from_numpy(np.ascontiguousarray(np.asarray(im, dtype=np.float32) / 255.0))


def control_identity(dataset, ref) -> tuple:
    """What decides the control pixels of sample ``ref`` (each control's content and its target's cut): a text
    encoder that sees the controls (Qwen-Image-Edit's) caches a caption's encoding under it."""
    return (tuple(c.digest for c in dataset.images[ref.index].controls), tuple(ref.bucket), tuple(ref.crop),
            bool(ref.flip), sample_control_size(dataset, ref))


def sample_control_size(dataset, ref) -> tuple[int, int]:
    """The pixel size of sample ``ref``'s controls under the dataset's control_resolution."""
    return control_size(ref.bucket, control_side(getattr(dataset.config, "control_resolution", TARGET)))


def with_control_images(dataset, images: torch.Tensor):
    """``dataset`` with its controls taken from a graph IMAGE batch ([N x k, H, W, 3], in the dataset's image
    order; k controls per image, an image's k controls next to each other), replacing any control folders."""
    train = [i for i, e in enumerate(dataset.images) if not e.is_reg]
    n = len(train)
    if dataset.has_clips:
        raise DatasetError("control_images pair with still images only, and this dataset holds video clips.")
    if images.dim() != 4 or images.shape[0] % n or not 1 <= images.shape[0] // n <= MAX_CONTROLS:
        raise DatasetError(f"control_images holds {images.shape[0] if images.dim() == 4 else 'no'} image(s) for "
                           f"{n} dataset image(s): give one control per image (or 2 or 3 per image, each image's "
                           "next to each other), in the dataset's order (Kiln Dataset Preview shows it).")
    if len(train) != len(dataset.images):
        raise DatasetError("control_images cannot pair regularization images: leave reg_path empty, or put the "
                           "controls in control folders beside both image folders.")
    k = images.shape[0] // n
    return dataset.with_controls([tuple(image_control(images[i * k + s], i * k + s) for s in range(k))
                                  for i in range(n)])
