"""What a training step sees of one planned sample: the image scaled, cropped to its bucket and flipped,
colour-augmented when that is on, and its mask (``<stem>.mask.png`` or the alpha channel) cut the same way.

``dataset`` below is a KilnDataset (core/data/dataset.py): its entries, config and the images kept scaled
from loading."""
from __future__ import annotations

import random

import numpy as np
import torch
from PIL import Image

from .augment import color_aug
from .config import DatasetError
from .images import UnreadableImage, open_rgb, read_mask, to_uint8
from .plan import SampleRef, entry_scaled_size


def _crop(dataset, im: Image.Image, ref: SampleRef) -> Image.Image:
    target = entry_scaled_size(dataset.images[ref.index], ref.bucket, dataset.config)
    if target != im.size:
        im = im.resize(target, Image.LANCZOS, reducing_gap=2.0)
    x, y = ref.crop
    im = im.crop((x, y, x + ref.bucket[0], y + ref.bucket[1]))
    return im.transpose(Image.FLIP_LEFT_RIGHT) if ref.flip else im


def scaled_image(dataset, ref: SampleRef) -> Image.Image:
    """The RGB image scaled for ``ref``'s bucket, before the crop (kept from loading when it fits)."""
    e = dataset.images[ref.index]
    im = dataset.kept_image(ref.index) if ref.bucket == e.bucket else None
    if im is not None:
        return im
    try:
        return open_rgb(e.path, dataset.config.background,
                        draft_size=entry_scaled_size(e, ref.bucket, dataset.config))
    except (UnreadableImage, OSError) as exc:
        raise DatasetError(f"{e.path}: became unreadable after loading ({exc}); restore or remove it "
                           "and load the dataset again") from exc


def load_pixels(dataset, ref: SampleRef) -> torch.Tensor:
    """float32 [H, W, 3] in 0..1 at the bucket size (a clip window: [F, H, W, 3], every frame cut alike); crop,
    flip and colour augmentation applied."""
    e = dataset.images[ref.index]
    if e.frames:
        frames = [_crop(dataset, Image.fromarray(f), ref) for f in clip_frames(e)]
        arr = np.stack([np.asarray(f, dtype=np.float32) for f in frames]) / 255.0
    else:
        arr = np.asarray(_crop(dataset, scaled_image(dataset, ref), ref), dtype=np.float32) / 255.0
    if dataset.config.color_aug:
        arr = color_aug(arr, random.Random(ref.aug_seed))
    return torch.from_numpy(np.ascontiguousarray(arr))


def load_control(dataset, ref: SampleRef, k: int) -> torch.Tensor:
    """float32 [H, W, 3]: control ``k`` of ``ref``'s image, scaled, cropped and flipped exactly as the image is (never
    colour-augmented), so the pair lines up pixel for pixel."""
    from .controls import control_pixels, sample_control_size
    e = dataset.images[ref.index]
    return control_pixels(e.controls[k], entry_scaled_size(e, ref.bucket, dataset.config), ref.crop, ref.bucket,
                          ref.flip, dataset.config.background, sample_control_size(dataset, ref))


def clip_frames(entry) -> np.ndarray:
    """A clip window's frames, decoded in one pass (uint8 [F, H, W, 3])."""
    from .clips import ClipError, read_frames
    try:
        return read_frames(entry.path, entry.frames)
    except ClipError as exc:
        raise DatasetError(f"{exc} (it read at load; restore it or load the dataset again)") from exc


def load_mask(dataset, ref: SampleRef) -> torch.Tensor | None:
    """[H, W] in 0..1 from ``<stem>.mask.png`` beside the image, else the image's alpha channel."""
    e = dataset.images[ref.index]
    if e.frames:
        return None   # clips train unmasked
    mask_file = e.path.with_name(e.path.stem + ".mask.png")
    if mask_file.is_file():
        with Image.open(mask_file) as m:
            arr = np.asarray(m.convert("L"), dtype=np.float32) / 255.0
    else:
        arr = read_mask(e.path)
        if arr is None:
            return None
    im = Image.fromarray(to_uint8(arr), "L")
    if im.size != e.size:
        im = im.resize(e.size, Image.BILINEAR)
    return torch.from_numpy(np.asarray(_crop(dataset, im, ref), dtype=np.float32) / 255.0)
