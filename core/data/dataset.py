"""KILN_DATASET: images found the way kohya finds them, with buckets, captions and a per-epoch plan."""
from __future__ import annotations

import hashlib
import json
import logging
import math
import random
import re
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from PIL import Image

from .buckets import assign_bucket, cover_size, make_buckets
from .captions import process_caption, split_tags
from .config import DatasetConfig
from . import images as images_mod
from .images import IMAGE_EXTENSIONS, UnreadableImage, open_rgb, read_mask

_CONCEPT_DIR = re.compile(r"^(\d+)_(.+)$")
CAPTION_ALTERNATIVES = (".txt", ".caption")


class DatasetError(ValueError):
    """A dataset that cannot train; the message names the folder and the fix."""


@dataclass(frozen=True)
class ImageEntry:
    path: Path
    caption: str
    repeats: int
    concept: str            # the folder name (kohya's ss_tag_frequency / ss_dataset_dirs key)
    is_reg: bool
    size: tuple[int, int]   # after EXIF orientation
    bucket: tuple[int, int]
    content_hash: str       # of the file bytes: latent-cache key


@dataclass(frozen=True)
class SampleRef:
    index: int
    bucket: tuple[int, int]
    crop: tuple[int, int]
    flip: bool
    is_reg: bool
    aug_seed: int = 0       # colour augmentation draw (only used when color_aug is on)


def _concept_dirs(root: Path, flat_repeats: int, warn) -> list[tuple[Path, int, str]]:
    subdirs = sorted(p for p in root.iterdir() if p.is_dir())
    concepts = []
    ignored = []
    for d in subdirs:
        m = _CONCEPT_DIR.match(d.name)
        if m:
            concepts.append((d, int(m.group(1)), m.group(2)))
        elif any(f.suffix.lower() in IMAGE_EXTENSIONS for f in d.iterdir() if f.is_file()):
            ignored.append(d.name)
    if ignored:
        warn(f"Kiln: {root}: ignored image folders without the N_name form (e.g. '10_{ignored[0]}'): {ignored}")
    if concepts:
        return concepts
    if any(f.suffix.lower() in IMAGE_EXTENSIONS for f in root.iterdir() if f.is_file()):
        return [(root, flat_repeats, root.name)]
    return []


def _find_images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
                  and not p.name.endswith(".mask.png"))


def _read_caption(image: Path, cfg: DatasetConfig, class_text: str) -> str | None:
    if cfg.caption_source == "none":
        return ""
    if cfg.caption_source == "phrase":
        return cfg.caption_phrase
    cap = image.with_suffix(cfg.caption_extension)
    if cap.is_file():
        return cap.read_text(encoding="utf-8", errors="replace").strip().replace("\n", ", ")
    return None


def _caption_mismatch_hint(folder: Path, images: list[Path], ext: str) -> str:
    for alt in CAPTION_ALTERNATIVES + (".tags",):
        if alt != ext and any(i.with_suffix(alt).is_file() for i in images):
            return (f" No '{ext}' captions in {folder}, but '{alt}' files are there: set caption_extension to "
                    f"'{alt}' (or rename them).")
    return ""


def _prepare(path: Path, cfg: DatasetConfig, buckets) -> tuple[tuple[int, int], str, tuple[int, int], Image.Image]:
    """One decode per image: check it (corrupt and truncated files raise here, before any model loads),
    pick its bucket, and scale it to cover the bucket (JPEGs decode at reduced scale when that suffices).
    Returns (oriented size, content hash, bucket, the scaled image)."""
    data = path.read_bytes()
    digest = hashlib.sha1(data).hexdigest()

    def bucket_for(size):
        return assign_bucket(size, buckets, cfg.bucket_no_upscale, cfg.resolution, cfg.bucket_reso_steps) \
            if cfg.enable_buckets else buckets[0]
    with Image.open(path) as head:
        is_jpeg = head.format == "JPEG"
        # JPEG EXIF sits in the header, so the oriented size is known before decoding (other formats may
        # keep EXIF after the pixels, so they are decoded first and measured after).
        if is_jpeg:
            size = head.size[::-1] if head.getexif().get(0x0112, 1) in (5, 6, 7, 8) else head.size
    if is_jpeg:
        bucket = bucket_for(size)
        cover = cover_size(size, bucket)
        im = open_rgb(path, cfg.background, draft_size=cover)
    else:
        im = open_rgb(path, cfg.background)
        size = im.size
        bucket = bucket_for(size)
        cover = cover_size(size, bucket)
    if im.size != cover:
        im = im.resize(cover, Image.LANCZOS, reducing_gap=2.0)
    return size, digest, bucket, im


def _scan(root_text: str, repeats: int, is_reg: bool, cfg: DatasetConfig, warn) -> tuple[list, list]:
    root = Path(root_text).expanduser()
    what = "regularization folder" if is_reg else "dataset folder"
    if not root.is_dir():
        raise DatasetError(f"{what} {root} does not exist. Give the folder that holds your N_name subfolders "
                           "(e.g. 10_mychar) or a folder of images.")
    concepts = _concept_dirs(root, repeats, warn)
    if not concepts:
        raise DatasetError(f"no images found in {root} or in N_name subfolders of it (kohya's layout: "
                           f"{root}/10_mychar/*.png). Supported: {sorted(IMAGE_EXTENSIONS)}.")
    pending = []
    hints = []
    for folder, n, class_text in concepts:
        images = _find_images(folder)
        captions = {img: _read_caption(img, cfg, class_text) for img in images}
        missing = [img for img, c in captions.items() if c is None]
        if cfg.caption_source == "files" and images and len(missing) == len(images):
            hint = _caption_mismatch_hint(folder, images, cfg.caption_extension)
            if hint:
                hints.append(hint)
        for img in images:
            # kohya: an image without a caption file trains on its folder's class text.
            pending.append((img, captions[img] if captions[img] is not None else class_text, n, folder.name))
    if hints:
        warn("Kiln:" + " ".join(hints))
    return pending, hints


def load_dataset(config: DatasetConfig, warn: Callable[[str], None] = logging.warning,
                 workers: int = 4) -> "KilnDataset":
    if config.caption_source not in ("files", "phrase", "none"):
        raise DatasetError(f"caption_source must be files, phrase or none (got {config.caption_source!r})")
    if not config.caption_extension.startswith("."):
        config = replace(config, caption_extension="." + config.caption_extension)
    train, hints = _scan(config.path, config.repeats, False, config, warn)
    reg = _scan(config.reg_path, config.reg_repeats, True, config, warn)[0] if config.reg_path else []
    buckets = make_buckets(config.resolution, config.min_bucket_reso, config.max_bucket_reso,
                           config.bucket_reso_steps) if config.enable_buckets else [(config.resolution,) * 2]
    jobs = [(e, False) for e in train] + [(e, True) for e in reg]
    with ThreadPoolExecutor(max(1, workers)) as pool:
        prepared = list(pool.map(lambda j: _safe_prepare(j[0][0], config, buckets), jobs))
    entries, bad, scaled = [], [], {}
    budget = PREPARED_BYTES
    for ((path, caption, n, concept), is_reg), result in zip(jobs, prepared):
        if isinstance(result, str):
            bad.append(f"{path.name} ({result})")
            continue
        size, digest, bucket, image = result
        cost = image.width * image.height * 3
        if cost <= budget:  # keep the scaled image so training never decodes it again
            scaled[len(entries)] = image
            budget -= cost
        entries.append(ImageEntry(path, caption, n, concept, is_reg, size, bucket, digest))
    if bad:
        warn(f"Kiln: skipped {len(bad)} unreadable image(s): {', '.join(bad)}")
    if not any(not e.is_reg for e in entries):
        raise DatasetError(f"no usable training images in {config.path}" + (f" ({len(bad)} unreadable)" if bad else "")
                           + ". Fix or remove the files listed above.")
    return KilnDataset(config, tuple(entries), scaled)


# Scaled images kept in memory after the first decode (beyond this, images are decoded again when used).
PREPARED_BYTES = 2 * 1024 ** 3


def _safe_prepare(path, config, buckets):
    try:
        return _prepare(path, config, buckets)
    except (UnreadableImage, OSError, Image.DecompressionBombError) as exc:
        return str(exc)


class KilnDataset:
    """Immutable: transforming nodes (tag filters) return a new dataset."""

    def __init__(self, config: DatasetConfig, images: tuple[ImageEntry, ...], scaled: dict | None = None):
        self.config = config
        self.images = images
        # index -> the image already scaled to cover its bucket (from loading); a cache, not part of the value
        self._scaled = scaled or {}

    def __len__(self) -> int:
        return len(self.images)

    def __repr__(self) -> str:
        return f"KilnDataset({len(self.images)} images, {self.samples_per_epoch()} samples per epoch)"

    # -- step arithmetic ----------------------------------------------------------------------------
    def _train_samples(self) -> int:
        return sum(e.repeats for e in self.images if not e.is_reg)

    def _reg_pool(self) -> list[int]:
        return [i for i, e in enumerate(self.images) if e.is_reg for _ in range(e.repeats)]

    def samples_per_epoch(self) -> int:
        """Training samples (images x repeats), plus as many regularization samples when a reg folder is
        given (kohya balances reg images to the training count, cycling them)."""
        n = self._train_samples()
        return n * 2 if self._reg_pool() else n

    def _bucket_counts(self) -> Counter:
        counts = Counter()
        for e in self.images:
            if not e.is_reg:
                counts[e.bucket] += e.repeats
        reg = self._reg_pool()
        for k in range(self._train_samples() if reg else 0):
            counts[self.images[reg[k % len(reg)]].bucket] += 1
        return counts

    def steps_per_epoch(self, batch_size: int) -> int:
        """Batches never mix buckets, so each bucket rounds up on its own (as kohya's)."""
        return sum(math.ceil(c / batch_size) for c in self._bucket_counts().values())

    def total_steps(self, epochs: int, batch_size: int) -> int:
        return self.steps_per_epoch(batch_size) * epochs

    # -- the plan -------------------------------------------------------------------------------------
    def epoch_plan(self, epoch: int, batch_size: int, seed: int) -> list[list[SampleRef]]:
        rng = random.Random(f"{seed}:{epoch}")
        cfg = self.config
        samples = [i for i, e in enumerate(self.images) if not e.is_reg for _ in range(e.repeats)]
        reg = self._reg_pool()
        if reg:
            rng.shuffle(reg)
            samples += [reg[k % len(reg)] for k in range(len(samples))]
        by_bucket: dict[tuple[int, int], list[SampleRef]] = {}
        for i in samples:
            e = self.images[i]
            sw, sh = cover_size(e.size, e.bucket)
            if cfg.random_crop:
                crop = (rng.randint(0, sw - e.bucket[0]), rng.randint(0, sh - e.bucket[1]))
            else:
                crop = ((sw - e.bucket[0]) // 2, (sh - e.bucket[1]) // 2)
            flip = cfg.flip_aug and rng.random() < 0.5
            by_bucket.setdefault(e.bucket, []).append(
                SampleRef(i, e.bucket, crop, flip, e.is_reg, rng.randrange(2 ** 31) if cfg.color_aug else 0))
        batches = []
        for bucket in sorted(by_bucket):
            refs = by_bucket[bucket]
            rng.shuffle(refs)
            batches += [refs[k:k + batch_size] for k in range(0, len(refs), batch_size)]
        rng.shuffle(batches)
        return batches

    # -- pixels, masks, captions ----------------------------------------------------------------------
    def _crop(self, im: Image.Image, ref: SampleRef) -> Image.Image:
        e = self.images[ref.index]
        sw, sh = cover_size(e.size, ref.bucket)
        if (sw, sh) != im.size:
            im = im.resize((sw, sh), Image.LANCZOS, reducing_gap=2.0)
        x, y = ref.crop
        im = im.crop((x, y, x + ref.bucket[0], y + ref.bucket[1]))
        return im.transpose(Image.FLIP_LEFT_RIGHT) if ref.flip else im

    def load_pixels(self, ref: SampleRef) -> torch.Tensor:
        e = self.images[ref.index]
        im = self._scaled.get(ref.index) if ref.bucket == e.bucket else None
        if im is None:
            try:
                im = open_rgb(e.path, self.config.background, draft_size=cover_size(e.size, ref.bucket))
            except UnreadableImage as exc:
                raise DatasetError(f"{e.path}: became unreadable during training ({exc}); restore or remove it") from exc
        arr = np.asarray(self._crop(im, ref), dtype=np.float32) / 255.0
        if self.config.color_aug:
            arr = _color_aug(arr, random.Random(ref.aug_seed))
        return torch.from_numpy(arr.copy())

    def load_mask(self, ref: SampleRef) -> torch.Tensor | None:
        """[H, W] in 0..1 from ``<stem>.mask.png`` beside the image, else the image's alpha channel."""
        e = self.images[ref.index]
        mask_file = e.path.with_name(e.path.stem + ".mask.png")
        if mask_file.is_file():
            with Image.open(mask_file) as m:
                arr = np.asarray(m.convert("L"), dtype=np.float32) / 255.0
        else:
            arr = read_mask(e.path)
            if arr is None:
                return None
        im = Image.fromarray((arr * 255).astype(np.uint8), "L")
        if im.size != e.size:
            im = im.resize(e.size, Image.BILINEAR)
        return torch.from_numpy(np.asarray(self._crop(im, ref), dtype=np.float32) / 255.0)

    def caption(self, ref: SampleRef, seed: int) -> str:
        return process_caption(self.images[ref.index].caption, self.config, random.Random(f"{seed}:{ref.index}"))

    def captions_vary(self) -> bool:
        c = self.config
        return bool(c.shuffle_caption or c.caption_dropout_rate or c.tag_dropout_rate)

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
        return KilnDataset(self.config, tuple(replace(e, caption=fn(e.caption)) for e in self.images), self._scaled)

    # -- reports --------------------------------------------------------------------------------------
    def tag_frequency(self) -> dict[str, dict[str, int]]:
        freq: dict[str, Counter] = {}
        for e in self.images:
            if not e.is_reg:
                freq.setdefault(e.concept, Counter()).update(split_tags(e.caption))
        return {k: dict(v.most_common()) for k, v in freq.items()}

    def training_metadata(self) -> dict[str, str]:
        c = self.config
        dirs: dict[str, dict] = {}
        for e in self.images:
            d = dirs.setdefault(e.concept, {"n_repeats": e.repeats, "img_count": 0})
            d["img_count"] += 1
        counts = self._bucket_counts()
        buckets = {str(i): {"resolution": list(b), "count": counts[b]} for i, b in enumerate(sorted(counts))}
        errors = [abs(e.size[0] / e.size[1] - e.bucket[0] / e.bucket[1]) for e in self.images]
        return {
            "ss_dataset_dirs": json.dumps(dirs),
            "ss_tag_frequency": json.dumps(self.tag_frequency()),
            "ss_bucket_info": json.dumps({"buckets": buckets, "mean_img_ar_error": float(np.mean(errors))}),
            "ss_num_train_images": str(self._train_samples()),
            "ss_num_reg_images": str(sum(e.repeats for e in self.images if e.is_reg)),
            "ss_resolution": f"({c.resolution}, {c.resolution})",
            "ss_enable_bucket": str(c.enable_buckets),
            "ss_min_bucket_reso": str(c.min_bucket_reso),
            "ss_max_bucket_reso": str(c.max_bucket_reso),
            "ss_bucket_no_upscale": str(c.bucket_no_upscale),
            "ss_caption_dropout_rate": str(c.caption_dropout_rate),
            "ss_caption_tag_dropout_rate": str(c.tag_dropout_rate),
            "ss_keep_tokens": str(c.keep_tokens),
            "ss_shuffle_caption": str(c.shuffle_caption),
            "ss_flip_aug": str(c.flip_aug),
            "ss_color_aug": str(c.color_aug),
            "ss_random_crop": str(c.random_crop),
            "ss_prior_loss_weight": str(c.prior_loss_weight),
        }

    def summary(self, batch_size: int = 1, epochs: int = 1, top_tags: int = 20) -> str:
        counts = self._bucket_counts()
        lines = [f"{sum(1 for e in self.images if not e.is_reg)} training images, "
                 f"{sum(1 for e in self.images if e.is_reg)} regularization images",
                 f"{self.samples_per_epoch()} samples per epoch; steps per epoch at batch {batch_size}: "
                 f"{self.steps_per_epoch(batch_size)}; x {epochs} epochs = {self.total_steps(epochs, batch_size)} steps"]
        for concept, d in json.loads(self.training_metadata()["ss_dataset_dirs"]).items():
            lines.append(f"  {concept}: {d['img_count']} images x {d['n_repeats']} repeats")
        lines.append("buckets: " + ", ".join(f"{w}x{h}: {n}" for (w, h), n in sorted(counts.items())))
        for concept, tags in self.tag_frequency().items():
            top = list(tags.items())[:top_tags]
            lines.append(f"tags in {concept}: " + ", ".join(f"{t} ({n})" for t, n in top))
        return "\n".join(lines)


def _color_aug(arr: np.ndarray, rng: random.Random) -> np.ndarray:
    """Small hue rotation (in RGB, around the grey axis) and gamma change."""
    angle = rng.uniform(-0.1, 0.1) * math.pi
    c, s = math.cos(angle), math.sin(angle)
    k = 1 / 3
    sq = math.sqrt(k)
    rot = np.array([[c + (1 - c) * k, k * (1 - c) - sq * s, k * (1 - c) + sq * s],
                    [k * (1 - c) + sq * s, c + k * (1 - c), k * (1 - c) - sq * s],
                    [k * (1 - c) - sq * s, k * (1 - c) + sq * s, c + k * (1 - c)]], dtype=np.float32)
    out = np.clip(arr @ rot.T, 0, 1)
    return np.power(out, rng.uniform(0.85, 1.15)).astype(np.float32)
