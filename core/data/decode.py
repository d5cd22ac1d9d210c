"""One decode per image at load: check it (corrupt and truncated files fail here, before any model loads),
hash its bytes, pick its bucket and scale it for the bucket crop (JPEGs decode at reduced scale when that
suffices)."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path

from PIL import Image

from .buckets import assign_bucket, scaled_size
from .config import DatasetConfig
from .images import UnreadableImage, open_rgb, oriented_size


@dataclass(frozen=True)
class PreparedImage:
    size: tuple[int, int]     # after EXIF orientation
    digest: str               # sha1 of the file bytes: the latent-cache key
    bucket: tuple[int, int]
    image: Image.Image        # RGB, scaled to cover the bucket (not yet cropped)


def bucket_for(size, cfg: DatasetConfig, buckets) -> tuple[int, int]:
    if not cfg.enable_buckets:
        return buckets[0]
    return assign_bucket(size, buckets, cfg.bucket_no_upscale, cfg.resolution, cfg.bucket_reso_steps)


def prepare_image(path: Path, cfg: DatasetConfig, buckets) -> PreparedImage:
    data = path.read_bytes()
    digest = hashlib.sha1(data).hexdigest()
    with Image.open(BytesIO(data)) as head:
        # JPEG EXIF sits in the header, so the oriented size is known before decoding (other formats may
        # keep EXIF after the pixels, so they are decoded first and measured after).
        size = oriented_size(head) if head.format == "JPEG" else None
    if size is not None:
        bucket = bucket_for(size, cfg, buckets)
        target = scaled_size(size, bucket, cfg.bucket_no_upscale, cfg.resolution, cfg.bucket_reso_steps)
        im = open_rgb(data, cfg.background, draft_size=target)
    else:
        im = open_rgb(data, cfg.background)
        size = im.size
        bucket = bucket_for(size, cfg, buckets)
        target = scaled_size(size, bucket, cfg.bucket_no_upscale, cfg.resolution, cfg.bucket_reso_steps)
    if im.size != target:
        im = im.resize(target, Image.LANCZOS, reducing_gap=2.0)
    return PreparedImage(size, digest, bucket, im)


@dataclass(frozen=True)
class PreparedClip:
    size: tuple[int, int]     # the frames' size
    digest: str               # sha1 of the file bytes: the latent-cache key (with each window's frames)
    bucket: tuple[int, int]
    windows: list             # source frame indices of each training window (core.data.clips.frame_windows)


def prepare_clip(path: Path, cfg: DatasetConfig, buckets) -> PreparedClip:
    """Probe a clip (its frames are decoded when a window trains, never all kept) and cut its windows."""
    from .clips import FrameSampling, clip_digest, frame_windows, probe_clip
    info = probe_clip(path)
    sampling = FrameSampling(cfg.frame_extraction, cfg.target_frames, cfg.frame_stride, cfg.frame_sample,
                             cfg.target_fps)
    return PreparedClip(info.size, clip_digest(path), bucket_for(info.size, cfg, buckets),
                        frame_windows(info, sampling))


def prepare_or_reason(path: Path, cfg: DatasetConfig, buckets) -> PreparedImage | PreparedClip | str:
    """The prepared image or clip, or why it cannot be read (the loader skips it and lists the reasons)."""
    from .clips import ClipError, is_clip
    if is_clip(path):
        try:
            return prepare_clip(path, cfg, buckets)
        except ClipError as exc:
            return str(exc).split(": ", 1)[-1]
    try:
        return prepare_image(path, cfg, buckets)
    except Image.UnidentifiedImageError:
        return "not an image, or a format Pillow cannot read"
    except (UnreadableImage, OSError, ValueError, Image.DecompressionBombError) as exc:
        text = str(exc)
        return "not an image, or a format Pillow cannot read" if text.startswith("cannot identify image file") else text
