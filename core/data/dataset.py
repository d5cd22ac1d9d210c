"""KILN_DATASET: images found the way kohya finds them, with buckets, captions and a per-epoch plan.

Folder convention (kohya's DreamBooth layout): ``root/N_name/*.png`` - N repeats per epoch, ``name`` the
class text an image trains on when it has no caption. Several N_name folders are several concepts. A flat
folder of images uses the ``repeats`` input. Regularization images come the same way from ``reg_path``.

Step arithmetic (kohya's): an epoch is every training image x its repeats, plus - when there are
regularization images - as many regularization samples again (kohya balances them to the training count:
cycled when there are fewer, a per-epoch shuffled subset when there are more; each weighted by
``prior_loss_weight`` in the loss). Batches never mix buckets, so each bucket rounds UP on its own:
steps per epoch = sum over buckets of ceil(samples in bucket / batch); total = that x epochs. With one
bucket this is ceil(images x repeats [x 2 with reg] / batch) x epochs.
"""
from __future__ import annotations

import hashlib
import json
from io import BytesIO
import logging
import math
import os
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

from .buckets import assign_bucket, make_buckets, scaled_size
from .captions import captions_vary as _captions_vary, process_caption, split_tags
from .config import DatasetConfig
from .images import IMAGE_EXTENSIONS, UnreadableImage, open_rgb, oriented_size, read_mask

_CONCEPT_DIR = re.compile(r"^(\d+)_(.+)$")
CAPTION_ALTERNATIVES = (".txt", ".caption", ".tags")
# Scaled images kept in memory after the first decode; beyond this, images are decoded again when used,
# so memory stays bounded however many images there are (the latent cache makes re-decoding rare).
# Counted as Pillow holds RGB: 4 bytes per pixel. Settable with KILN_DATASET_MEMORY_MB or load_dataset's
# keep_bytes.
PREPARED_BYTES = int(float(os.environ.get("KILN_DATASET_MEMORY_MB", "32")) * 1024 ** 2)
PIXEL_BYTES = 4
# An image scaled up by more than this to fill its bucket is worth a warning (it trains blurry).
UPSCALE_WARN = 2.0
# Caption files that are not UTF-8 are read as Windows' Western code page (what Notepad wrote before
# UTF-8), which also covers Latin-1 text; nothing is replaced with U+FFFD.
LEGACY_CAPTION_ENCODING = "cp1252"


class DatasetError(ValueError):
    """A dataset that cannot train; the message names the folder and the fix."""


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


@dataclass(frozen=True)
class SampleRef:
    index: int
    bucket: tuple[int, int]
    crop: tuple[int, int]
    flip: bool
    is_reg: bool
    aug_seed: int = 0       # colour augmentation draw (only used when color_aug is on)


@dataclass(frozen=True)
class _Concept:
    folder: Path
    repeats: int
    class_text: str


def _is_image(p: Path) -> bool:
    # Hidden files (macOS "._x.jpg" resource forks, editor temp files) are not images; masks are not samples.
    return (p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".")
            and not p.name.lower().endswith(".mask.png"))


def _find_images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if _is_image(p))


def _concepts(root: Path, flat_repeats: int, warn) -> list[_Concept]:
    subdirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    concepts, ignored = [], []
    for d in subdirs:
        m = _CONCEPT_DIR.match(d.name)
        if m:
            if int(m.group(1)) == 0:
                warn(f"Kiln: {d} has 0 repeats and is skipped (rename it e.g. to 1_{m.group(2)}).")
                continue
            concepts.append(_Concept(d, int(m.group(1)), m.group(2).strip()))
        elif any(_is_image(f) for f in d.iterdir()):
            ignored.append(d.name)
    loose = _find_images(root)
    if concepts:
        if ignored:
            warn(f"Kiln: {root}: ignored image folders not named N_name: {ignored} "
                 f"(rename e.g. to '10_{ignored[0]}' to train them with 10 repeats).")
        if loose:
            warn(f"Kiln: {root}: ignored {len(loose)} image(s) beside the N_name folders (e.g. {loose[0].name}); "
                 "move them into a concept folder to train them.")
        return concepts
    if loose:
        m = _CONCEPT_DIR.match(root.name)
        if m and int(m.group(1)) > 0:
            # The concept folder itself was given (a common mix-up): use it with its own N.
            warn(f"Kiln: {root} is itself an N_name folder: training it with its {m.group(1)} repeats and class "
                 f"text '{m.group(2)}' (the repeats input is ignored). Usually you give its parent folder.")
            return [_Concept(root, int(m.group(1)), m.group(2).strip())]
        if ignored:
            warn(f"Kiln: {root}: subfolders {ignored} are not N_name folders and are ignored.")
        return [_Concept(root, flat_repeats, root.name)]
    if ignored:
        raise DatasetError(f"{root} has image folders {ignored} but none is named N_name. Rename them as kohya "
                           f"expects, e.g. '{root / ('10_' + ignored[0])}' (10 = repeats per epoch, the rest is "
                           "the class text used for images without captions).")
    return []


def decode_caption_bytes(data: bytes) -> tuple[str, str]:
    """(text, encoding): UTF-8 (a BOM dropped, as Windows editors write it), else cp1252, else Latin-1
    (cp1252 leaves five bytes undefined; Latin-1 maps every byte), never a lossy replacement."""
    for encoding in ("utf-8-sig", LEGACY_CAPTION_ENCODING, "latin-1"):
        try:
            return data.decode(encoding), encoding
        except UnicodeDecodeError:
            continue
    raise AssertionError("latin-1 decodes any bytes")


def _read_caption_file(path: Path, notes: dict | None = None) -> str:
    text, encoding = decode_caption_bytes(path.read_bytes())
    if encoding != "utf-8-sig" and notes is not None:
        notes.setdefault("legacy", []).append((path, encoding))
    # Several lines are joined as more tags.
    return ", ".join(line.strip().strip(",").strip() for line in text.splitlines() if line.strip())


def _captions_for(concept: _Concept, images: list[Path], cfg: DatasetConfig, notes: dict) -> list[str]:
    if cfg.caption_source == "none":
        return [""] * len(images)
    if cfg.caption_source == "phrase":
        return [cfg.caption_phrase] * len(images)
    out = []
    ext = cfg.caption_extension
    # Caption files whose image is missing (renamed or deleted): they train nothing.
    stems = {img.stem for img in images}
    notes.setdefault("orphans", []).extend(
        p for p in sorted(concept.folder.glob(f"*{ext}")) if p.is_file() and p.stem not in stems
        and not p.name.startswith(".") and p.suffix == ext)
    # Images without any caption are normal in a class-text-only concept; a mix is worth a warning.
    mixed = any(img.with_suffix(ext).is_file() for img in images)
    for img in images:
        cap_file = img.with_suffix(ext)
        caption = _read_caption_file(cap_file, notes) if cap_file.is_file() else None
        if caption is None:
            alt = next((a for a in CAPTION_ALTERNATIVES if a != ext and img.with_suffix(a).is_file()), None)
            if alt:
                notes.setdefault("other_ext", Counter())[(concept.folder, alt)] += 1
            elif mixed:
                notes.setdefault("no_caption", {}).setdefault((concept.folder, concept.class_text), []).append(img)
        elif not caption:
            notes.setdefault("empty", []).append(cap_file.name)
            caption = None
        # kohya: an image without a caption trains on its folder's class text.
        out.append(caption if caption is not None else concept.class_text)
    return out


def _caption_warnings(notes: dict, cfg: DatasetConfig, warn, unreadable: set | None = None) -> None:
    ext = cfg.caption_extension
    unreadable = unreadable or set()
    legacy = notes.get("legacy", [])
    if legacy:
        names = [p.name for p, _ in legacy]
        warn(f"Kiln: {len(legacy)} caption file(s) are not UTF-8 and were read as {legacy[0][1]} (Windows/Latin-1 "
             f"text): {', '.join(names[:20])}" + (" ..." if len(names) > 20 else "")
             + ". Re-save them as UTF-8 so every tool reads the same text.")
    orphans = notes.get("orphans", [])
    if orphans:
        warn(f"Kiln: {len(orphans)} caption file(s) have no image beside them and are not used: "
             + ", ".join(str(p.name) for p in orphans[:20]) + (" ..." if len(orphans) > 20 else ""))
    for (folder, alt), n in sorted(notes.get("other_ext", {}).items()):
        warn(f"Kiln: no '{ext}' caption for {n} image(s) in {folder}, but '{alt}' files are there: those images "
             f"train on the folder's class text instead. Set caption_extension to '{alt}' (or rename the files "
             f"to '{ext}').")
    for (folder, class_text), images in sorted(notes.get("no_caption", {}).items()):
        # Unreadable images are skipped (and listed in their own warning): they are not counted here.
        n = sum(1 for img in images if img not in unreadable)
        if not n:
            continue
        warn(f"Kiln: {n} image(s) in {folder} have no '{ext}' caption: they train on the class text "
             f"'{class_text}'.")
    if notes.get("empty"):
        names = notes["empty"]
        warn(f"Kiln: {len(names)} empty caption file(s) (the class text is used): {', '.join(names[:20])}"
             + (" ..." if len(names) > 20 else ""))


def _scan(root_text: str, repeats: int, is_reg: bool, cfg: DatasetConfig, warn, notes: dict | None = None) -> list[tuple]:
    """(image path, raw caption, repeats, concept folder name) for every image found. Caption notes are
    gathered in ``notes`` (warned about once the images are read) or warned about at once."""
    root = Path(root_text).expanduser()
    what = "regularization folder" if is_reg else "dataset folder"
    if not str(root_text).strip():
        raise DatasetError(f"no {what} given: set the path to the folder that holds your N_name subfolders "
                           "(e.g. 10_mychar) or a folder of images.")
    if not root.is_dir():
        raise DatasetError(f"{what} {root} does not exist. Give the folder that holds your N_name subfolders "
                           "(e.g. 10_mychar) or a folder of images.")
    concepts = _concepts(root, repeats, warn)
    found, own_notes = [], notes is None
    notes = {} if notes is None else notes
    for concept in concepts:
        images = _find_images(concept.folder)
        for img, caption in zip(images, _captions_for(concept, images, cfg, notes)):
            found.append((img, caption, concept.repeats, concept.folder.name))
    if not found:
        raise DatasetError(f"no images found in {what} {root} or in N_name subfolders of it (kohya's layout: "
                           f"{root / '10_mychar' / 'image.png'}). Supported: {', '.join(sorted(IMAGE_EXTENSIONS))}.")
    if own_notes:
        _caption_warnings(notes, cfg, warn)
    return found


@dataclass(frozen=True)
class _Prepared:
    size: tuple[int, int]
    digest: str
    bucket: tuple[int, int]
    image: Image.Image


def _prepare(path: Path, cfg: DatasetConfig, buckets) -> _Prepared:
    """One decode per image: check it (corrupt and truncated files raise here, before any model loads),
    pick its bucket, and scale it for the bucket crop (JPEGs decode at reduced scale when that suffices)."""
    data = path.read_bytes()
    digest = hashlib.sha1(data).hexdigest()
    with Image.open(BytesIO(data)) as head:
        # JPEG EXIF sits in the header, so the oriented size is known before decoding (other formats may
        # keep EXIF after the pixels, so they are decoded first and measured after).
        size = oriented_size(head) if head.format == "JPEG" else None
    if size is not None:
        bucket = _bucket_for(size, cfg, buckets)
        target = scaled_size(size, bucket, cfg.bucket_no_upscale, cfg.resolution, cfg.bucket_reso_steps)
        im = open_rgb(data, cfg.background, draft_size=target)
    else:
        im = open_rgb(data, cfg.background)
        size = im.size
        bucket = _bucket_for(size, cfg, buckets)
        target = scaled_size(size, bucket, cfg.bucket_no_upscale, cfg.resolution, cfg.bucket_reso_steps)
    if im.size != target:
        im = im.resize(target, Image.LANCZOS, reducing_gap=2.0)
    return _Prepared(size, digest, bucket, im)


def _bucket_for(size, cfg: DatasetConfig, buckets) -> tuple[int, int]:
    if not cfg.enable_buckets:
        return buckets[0]
    return assign_bucket(size, buckets, cfg.bucket_no_upscale, cfg.resolution, cfg.bucket_reso_steps)


def _safe_prepare(path, config, buckets):
    try:
        return _prepare(path, config, buckets)
    except Image.UnidentifiedImageError:
        return "not an image, or a format Pillow cannot read"
    except (UnreadableImage, OSError, ValueError, Image.DecompressionBombError) as exc:
        text = str(exc)
        return "not an image, or a format Pillow cannot read" if text.startswith("cannot identify image file") else text


def _check_config(config: DatasetConfig) -> DatasetConfig:
    if config.caption_source not in ("files", "phrase", "none"):
        raise DatasetError(f"caption_source must be files, phrase or none (got {config.caption_source!r})")
    if config.caption_source == "phrase" and not config.caption_phrase.strip():
        raise DatasetError("caption_source is 'phrase' but caption_phrase is empty: type the phrase (e.g. your "
                           "trigger word) or use caption_source 'none'.")
    ext = config.caption_extension.strip()
    if not ext.startswith("."):
        ext = "." + ext
    if ext.lower() in IMAGE_EXTENSIONS:
        raise DatasetError(f"caption_extension {ext!r} is an image extension; use '.txt' or '.caption'.")
    if config.repeats < 1 or config.reg_repeats < 1:
        raise DatasetError(f"repeats must be at least 1 (got {config.repeats}, reg {config.reg_repeats}).")
    if config.enable_buckets and not config.bucket_no_upscale:
        try:
            make_buckets(config.resolution, config.min_bucket_reso, config.max_bucket_reso, config.bucket_reso_steps)
        except ValueError as exc:
            raise DatasetError(f"bucket settings: {exc}") from exc
    return replace(config, caption_extension=ext, background=tuple(int(c) for c in config.background))


def load_dataset(config: DatasetConfig, warn: Callable[[str], None] = logging.warning, workers: int | None = None,
                 progress: Callable[[int, int], None] | None = None,
                 interrupted: Callable[[], None] | None = None, keep_bytes: int | None = None) -> "KilnDataset":
    """Find, check and prepare every image (decoded once, in threads). Raises DatasetError when nothing
    usable is there; odd images are converted, unreadable ones skipped with one warning listing them.
    ``progress(done, total)`` is called once per image prepared; ``interrupted()`` may raise to stop."""
    config = _check_config(config)
    notes: dict = {}
    train = _scan(config.path, config.repeats, False, config, warn, notes)
    reg = _scan(config.reg_path, config.reg_repeats, True, config, warn, notes) if config.reg_path.strip() else []
    if config.enable_buckets:
        buckets = make_buckets(config.resolution, config.min_bucket_reso, config.max_bucket_reso,
                               config.bucket_reso_steps) if not config.bucket_no_upscale else []
    else:
        buckets = [(config.resolution, config.resolution)]
    jobs = [(item, False) for item in train] + [(item, True) for item in reg]
    roots = {False: Path(config.path).expanduser(), True: Path(config.reg_path).expanduser()}
    workers = workers or min(8, 2 * (os.cpu_count() or 1))
    entries, bad, scaled, bad_paths, upscaled = [], [], {}, set(), []
    budget = PREPARED_BYTES if keep_bytes is None else keep_bytes
    with ThreadPoolExecutor(max(1, workers)) as pool:
        # A bounded window of images in flight, consumed in order: only the kept images stay in memory.
        results = _windowed_map(pool, lambda j: _safe_prepare(j[0][0], config, buckets), jobs, 2 * max(1, workers))
        for done, (((path, caption, n, concept), is_reg), result) in enumerate(zip(jobs, results), 1):
            if interrupted is not None:
                interrupted()
            if progress is not None:
                progress(done, len(jobs))
            if isinstance(result, str):
                bad.append(f"{_relative(path, roots[is_reg])} ({result})")
                bad_paths.add(path)
                continue
            if result.image.width > UPSCALE_WARN * result.size[0] or result.image.height > UPSCALE_WARN * result.size[1]:
                upscaled.append(f"{_relative(path, roots[is_reg])} ({result.size[0]}x{result.size[1]})")
            cost = result.image.width * result.image.height * PIXEL_BYTES
            if cost <= budget:  # keep the scaled image so training never decodes it again
                scaled[len(entries)] = result.image
                budget -= cost
            entries.append(ImageEntry(path, caption, n, concept, is_reg, result.size, result.bucket, result.digest))
    if bad:
        warn(f"Kiln: skipped {len(bad)} unreadable image(s) - fix or remove them: " + "; ".join(bad))
    _caption_warnings(notes, config, warn, bad_paths)
    if upscaled:
        warn(f"Kiln: {len(upscaled)} image(s) are scaled up more than {UPSCALE_WARN:g}x to fill their bucket and "
             f"will train blurry: {', '.join(upscaled[:20])}" + (" ..." if len(upscaled) > 20 else "")
             + ". Use larger images, a lower resolution, or bucket_no_upscale.")
    if not any(not e.is_reg for e in entries):
        raise DatasetError(f"no usable training images in {config.path}: all {len(bad)} are unreadable "
                           "(listed in the warning above). Re-export them as PNG or JPEG.")
    return KilnDataset(config, tuple(entries), scaled)


def _windowed_map(pool, fn, items, window: int):
    """``pool.map`` with at most ``window`` results pending (map submits everything at once, and results
    that finish before they are consumed all sit in memory)."""
    from collections import deque
    pending = deque()
    for item in items:
        pending.append(pool.submit(fn, item))
        if len(pending) >= window:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()


def dataset_fingerprint(*folders: str) -> str:
    """A cheap hash of the files (names, sizes, modification times) in the folders and their direct
    subfolders: changes when an image or caption is added, removed or edited (the node re-runs then)."""
    h = hashlib.sha1()
    for text in folders:
        root = Path(text).expanduser() if str(text).strip() else None
        if root is None or not root.is_dir():
            h.update(f"missing:{text}".encode())
            continue
        for d in [root] + sorted(p for p in root.iterdir() if p.is_dir()):
            for f in sorted(d.iterdir()):
                if f.is_file():
                    st = f.stat()
                    h.update(f"{f}:{st.st_size}:{st.st_mtime_ns}\n".encode("utf-8", "surrogateescape"))
    return h.hexdigest()


def _relative(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


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

    def __repr__(self) -> str:
        return f"KilnDataset({len(self.images)} images, {self.samples_per_epoch()} samples per epoch)"

    # -- step arithmetic ----------------------------------------------------------------------------
    def _train_samples(self) -> int:
        return sum(e.repeats for e in self.images if not e.is_reg)

    def _reg_pool(self) -> list[int]:
        return [i for i, e in enumerate(self.images) if e.is_reg for _ in range(e.repeats)]

    def samples_per_epoch(self) -> int:
        """Training samples (images x repeats), plus as many regularization samples when a reg folder is
        given (kohya balances reg samples to the training count, cycling them when there are fewer)."""
        n = self._train_samples()
        return n * 2 if self._reg_pool() else n

    def _reg_quota(self) -> Counter:
        """Regularization samples per bucket in every epoch: fixed (from one seeded draw of the balanced
        pool), so every epoch has the same number of steps; which reg images fill them varies by epoch."""
        if self._quota is None:
            reg = self._reg_pool()
            quota = Counter()
            if reg:
                random.Random(0).shuffle(reg)
                for k in range(self._train_samples()):
                    quota[self.images[reg[k % len(reg)]].bucket] += 1
            self._quota = quota
        return self._quota

    def _bucket_counts(self) -> Counter:
        """Samples per bucket in an epoch (the same in every epoch)."""
        counts = Counter()
        for e in self.images:
            if not e.is_reg:
                counts[e.bucket] += e.repeats
        counts.update(self._reg_quota())
        return counts

    def steps_per_epoch(self, batch_size: int) -> int:
        """Batches never mix buckets, so each bucket rounds up on its own (as kohya's)."""
        if batch_size < 1:
            raise ValueError(f"batch size must be at least 1 (got {batch_size})")
        return sum(math.ceil(c / batch_size) for c in self._bucket_counts().values())

    def total_steps(self, epochs: int, batch_size: int) -> int:
        """steps_per_epoch x epochs (see the module docstring for the rounding)."""
        return self.steps_per_epoch(batch_size) * epochs

    # -- the plan -------------------------------------------------------------------------------------
    def _scaled_size(self, e: ImageEntry, bucket: tuple[int, int]) -> tuple[int, int]:
        c = self.config
        return scaled_size(e.size, bucket, c.bucket_no_upscale, c.resolution, c.bucket_reso_steps)

    def epoch_plan(self, epoch: int, batch_size: int, seed: int) -> list[list[SampleRef]]:
        """Batches for one epoch, each from one bucket, in a shuffled order; deterministic in (epoch, seed)."""
        if batch_size < 1:
            raise ValueError(f"batch size must be at least 1 (got {batch_size})")
        rng = random.Random(f"{seed}:{epoch}")
        cfg = self.config
        samples = [i for i, e in enumerate(self.images) if not e.is_reg for _ in range(e.repeats)]
        for bucket, quota in sorted(self._reg_quota().items()):
            pool = [i for i in self._reg_pool() if self.images[i].bucket == bucket]
            rng.shuffle(pool)
            samples += [pool[k % len(pool)] for k in range(quota)]
        by_bucket: dict[tuple[int, int], list[SampleRef]] = {}
        for i in samples:
            e = self.images[i]
            sw, sh = self._scaled_size(e, e.bucket)
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
        target = self._scaled_size(self.images[ref.index], ref.bucket)
        if target != im.size:
            im = im.resize(target, Image.LANCZOS, reducing_gap=2.0)
        x, y = ref.crop
        im = im.crop((x, y, x + ref.bucket[0], y + ref.bucket[1]))
        return im.transpose(Image.FLIP_LEFT_RIGHT) if ref.flip else im

    def scaled_image(self, ref: SampleRef) -> Image.Image:
        """The RGB image scaled for ``ref``'s bucket, before the crop (kept from loading when it fits)."""
        e = self.images[ref.index]
        im = self._scaled.get(ref.index) if ref.bucket == e.bucket else None
        if im is not None:
            return im
        try:
            return open_rgb(e.path, self.config.background, draft_size=self._scaled_size(e, ref.bucket))
        except (UnreadableImage, OSError) as exc:
            raise DatasetError(f"{e.path}: became unreadable after loading ({exc}); restore or remove it "
                               "and load the dataset again") from exc

    def load_pixels(self, ref: SampleRef) -> torch.Tensor:
        """float32 [H, W, 3] in 0..1 at the bucket size; crop, flip and colour augmentation applied."""
        arr = np.asarray(self._crop(self.scaled_image(ref), ref), dtype=np.float32) / 255.0
        if self.config.color_aug:
            arr = _color_aug(arr, random.Random(ref.aug_seed))
        return torch.from_numpy(np.ascontiguousarray(arr))

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

    # -- reports --------------------------------------------------------------------------------------
    def tag_frequency(self) -> dict[str, dict[str, int]]:
        """kohya's ss_tag_frequency: per folder name, each comma-separated tag (lower-cased) and how many
        images carry it (regularization folders included, as kohya)."""
        freq: dict[str, Counter] = {}
        for e in self.images:
            freq.setdefault(e.concept, Counter()).update(t.lower() for t in split_tags(e.caption))
        return {k: dict(v.most_common()) for k, v in freq.items()}

    def _dirs(self, is_reg: bool) -> dict[str, dict]:
        dirs: dict[str, dict] = {}
        for e in self.images:
            if e.is_reg == is_reg:
                d = dirs.setdefault(e.concept, {"n_repeats": e.repeats, "img_count": 0})
                d["img_count"] += 1
        return dirs

    def bucket_info(self) -> dict:
        """kohya's ss_bucket_info: {"buckets": {i: {"resolution": [w, h], "count": samples}}, "mean_img_ar_error"}."""
        counts = self._bucket_counts()
        buckets = {str(i): {"resolution": list(b), "count": counts[b]} for i, b in enumerate(sorted(counts))}
        errors = [abs(e.size[0] / e.size[1] - e.bucket[0] / e.bucket[1]) for e in self.images]
        return {"buckets": buckets, "mean_img_ar_error": float(np.mean(errors)) if errors else 0.0}

    def training_metadata(self) -> dict[str, str]:
        """The dataset's ss_* keys, as JSON/str values the way kohya writes them."""
        c = self.config
        return {
            "ss_dataset_dirs": json.dumps(self._dirs(False)),
            "ss_reg_dataset_dirs": json.dumps(self._dirs(True)),
            "ss_tag_frequency": json.dumps(self.tag_frequency()),
            "ss_bucket_info": json.dumps(self.bucket_info()),
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
        n_train = sum(1 for e in self.images if not e.is_reg)
        n_reg = len(self.images) - n_train
        lines = [f"{n_train} training images" + (f", {n_reg} regularization images (balanced to the training "
                                                 f"count, loss weight {self.config.prior_loss_weight})" if n_reg else ""),
                 f"{self.samples_per_epoch()} samples per epoch; at batch {batch_size}: "
                 f"{self.steps_per_epoch(batch_size)} steps per epoch x {epochs} epochs = "
                 f"{self.total_steps(epochs, batch_size)} steps (each bucket's last batch may be partial)"]
        for is_reg in (False, True):
            for concept, d in self._dirs(is_reg).items():
                lines.append(f"  {'reg ' if is_reg else ''}{concept}: {d['img_count']} images x {d['n_repeats']} repeats")
        lines.append(f"{len(counts)} buckets: " + ", ".join(f"{w}x{h}: {n}" for (w, h), n in sorted(counts.items())))
        for concept, tags in self.tag_frequency().items():
            top = list(tags.items())[:top_tags]
            more = len(tags) - len(top)
            lines.append(f"tags in {concept}: " + ", ".join(f"{t} ({n})" for t, n in top)
                         + (f" ... and {more} more" if more > 0 else ""))
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
