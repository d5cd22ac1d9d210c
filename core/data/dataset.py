"""KILN_DATASET: the loaded images (ImageEntry each: where it is, its raw caption, repeats, concept,
size, bucket and content hash) as one immutable value, with what training asks of it.

Each job lives in its own module of core/data: finding images and captions (scan.py, caption_files.py),
decoding at load (decode.py, load.py), the step arithmetic and epoch plan (plan.py), a step's pixels and
masks (pixels.py, augment.py), per-step captions (captions.py), kohya's metadata (dataset_metadata.py) and the
text summary (summary.py). This class ties them to one dataset."""
from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import torch
from PIL import Image

from . import dataset_metadata, pixels, plan
from .captions import captions_vary as _captions_vary, process_caption
from .config import DatasetConfig
from .plan import SampleRef
from .summary import summary as _summary


@dataclass(frozen=True)
class ImageEntry:
    path: Path
    caption: str            # raw text (from the file, the phrase, or the folder's class text)
    repeats: int
    concept: str            # the folder name (kohya's ss_tag_frequency / ss_dataset_dirs key)
    is_reg: bool
    size: tuple[int, int]   # after EXIF orientation
    bucket: tuple[int, int]
    content_hash: str       # sha1 of the file bytes: latent-cache key
    frames: tuple = ()      # a clip window: its source frame indices (empty for a still image)
    controls: tuple = ()    # an edit pair's control images (core.data.controls.Control), cut like the image


class KilnDataset:
    """Immutable: transforming nodes (tag filters, taggers) return a new dataset."""

    def __init__(self, config: DatasetConfig, images: tuple[ImageEntry, ...], scaled: dict | None = None):
        self.config = config
        self.images = tuple(images)
        # index -> the image already scaled for its bucket crop (from loading); a cache, not part of the value
        self._scaled = scaled or {}
        self._quota: Counter | None = None

    def __len__(self) -> int:
        return len(self.images)

    @property
    def has_clips(self) -> bool:
        return any(e.frames for e in self.images)

    @property
    def controls_per_image(self) -> int:
        """Control images per sample (0: a plain dataset); load_dataset makes it the same for every image."""
        return max((len(e.controls) for e in self.images), default=0)

    def load_control(self, ref: SampleRef, k: int) -> torch.Tensor:
        """Control ``k`` of ``ref``'s image, float32 [H, W, 3], scaled, cropped and flipped like the image."""
        return pixels.load_control(self, ref, k)

    def with_controls(self, controls: list[tuple]) -> "KilnDataset":
        """New dataset with each image's controls replaced (one tuple per image, in order)."""
        return KilnDataset(self.config, tuple(replace(e, controls=tuple(c)) for e, c in zip(self.images, controls)),
                           self._scaled)

    def with_control_resolution(self, setting: str) -> "KilnDataset":
        """The same images with another control_resolution (an edit run resolves "family" once it knows the model)."""
        if setting == self.config.control_resolution:
            return self
        return KilnDataset(replace(self.config, control_resolution=setting), self.images, self._scaled)

    def for_temporal(self, temporal: int) -> "KilnDataset":
        """Clip windows cut to a length the video VAE encodes whole (k x temporal + 1 frames: 4k+1 for Wan,
        8k+1 for LTX-2): the frames past it are dropped."""
        from .clips import encodable_frames
        trimmed = tuple(replace(e, frames=e.frames[:encodable_frames(len(e.frames), temporal)]) if e.frames else e
                        for e in self.images)
        return self if trimmed == self.images else KilnDataset(self.config, trimmed, self._scaled)

    def __repr__(self) -> str:
        return f"KilnDataset({len(self.images)} images, {self.samples_per_epoch()} samples per epoch)"

    # -- step arithmetic and the plan (plan.py) -------------------------------------------------------
    def samples_per_epoch(self) -> int:
        return plan.samples_per_epoch(self.images)

    def bucket_counts(self) -> Counter:
        """Samples per bucket in an epoch (the same in every epoch)."""
        if self._quota is None:
            self._quota = plan.reg_quota(self.images)
        return plan.bucket_counts(self.images, self._quota)

    def steps_per_epoch(self, batch_size: int) -> int:
        return plan.steps_per_epoch(self.bucket_counts(), batch_size)

    def total_steps(self, epochs: int, batch_size: int) -> int:
        """steps_per_epoch x epochs (see plan.py for the rounding)."""
        return self.steps_per_epoch(batch_size) * epochs

    def epoch_plan(self, epoch: int, batch_size: int, seed: int) -> list[list[SampleRef]]:
        self.bucket_counts()   # fixes the regularization quota
        return plan.epoch_plan(self.images, self.config, self._quota, epoch, batch_size, seed)

    def scaled_size(self, entry: ImageEntry, bucket: tuple[int, int]) -> tuple[int, int]:
        """The size ``entry`` is scaled to before its crop into ``bucket``."""
        return plan.entry_scaled_size(entry, bucket, self.config)

    # -- pixels, masks, captions (pixels.py, captions.py) ---------------------------------------------
    def kept_image(self, index: int) -> Image.Image | None:
        """The image scaled for its own bucket, when loading kept it in memory."""
        return self._scaled.get(index)

    def scaled_image(self, ref: SampleRef) -> Image.Image:
        return pixels.scaled_image(self, ref)

    def load_pixels(self, ref: SampleRef) -> torch.Tensor:
        return pixels.load_pixels(self, ref)

    def load_mask(self, ref: SampleRef) -> torch.Tensor | None:
        return pixels.load_mask(self, ref)

    def caption(self, ref: SampleRef, seed: int) -> str:
        """The caption for one step: shuffle, keep_tokens, dropout, prefix/suffix; deterministic in seed.
        Regularization images get no prefix/suffix: those carry the trigger word, which must not be
        taught on the class images that are there to keep the class itself unchanged."""
        e = self.images[ref.index]
        cfg = self.config
        if e.is_reg and (cfg.caption_prefix or cfg.caption_suffix):
            cfg = replace(cfg, caption_prefix="", caption_suffix="")
        return process_caption(e.caption, cfg, random.Random(f"{seed}:{ref.index}"))

    def captions_vary(self) -> bool:
        """False when every step gets the same caption for an image (the trainer then caches encodings)."""
        return _captions_vary(self.config)

    # -- new datasets from this one -------------------------------------------------------------------
    def split_validation(self, fraction: float, seed: int = 0) -> tuple["KilnDataset", "KilnDataset | None"]:
        """Hold out about ``fraction`` of the training images (at least one, never all) for validation."""
        train_idx = [i for i, e in enumerate(self.images) if not e.is_reg]
        if fraction <= 0 or len(train_idx) < 2:
            return self, None
        k = min(len(train_idx) - 1, max(1, round(fraction * len(train_idx))))
        held = set(random.Random(f"val:{seed}").sample(train_idx, k))
        keep_idx = [i for i in range(len(self.images)) if i not in held]
        val_idx = sorted(held)
        keep = tuple(self.images[i] for i in keep_idx)
        val = tuple(replace(self.images[i], repeats=1) for i in val_idx)
        return (KilnDataset(self.config, keep, {n: self._scaled[i] for n, i in enumerate(keep_idx) if i in self._scaled}),
                KilnDataset(self.config, val, {n: self._scaled[i] for n, i in enumerate(val_idx) if i in self._scaled}))

    def with_captions(self, captions: dict) -> "KilnDataset":
        """New dataset with the captions given per image path (others unchanged), e.g. from a tagger."""
        return KilnDataset(self.config, tuple(replace(e, caption=captions.get(e.path, e.caption)) for e in self.images),
                           self._scaled)

    def map_captions(self, fn: Callable[[str], str]) -> "KilnDataset":
        """New dataset with ``fn`` applied to every raw caption (pixels shared, nothing decoded again)."""
        return KilnDataset(self.config, tuple(replace(e, caption=fn(e.caption)) for e in self.images), self._scaled)

    # -- reports (dataset_metadata.py, summary.py) ------------------------------------------------------------
    def tag_frequency(self) -> dict[str, dict[str, int]]:
        return dataset_metadata.tag_frequency(self.images)

    def bucket_info(self) -> dict:
        return dataset_metadata.bucket_info(self.images, self.bucket_counts())

    def training_metadata(self) -> dict[str, str]:
        return dataset_metadata.training_metadata(self.images, self.config, self.bucket_counts())

    def summary(self, batch_size: int = 1, epochs: int = 1, top_tags: int = 20) -> str:
        return _summary(self, batch_size, epochs, top_tags)
