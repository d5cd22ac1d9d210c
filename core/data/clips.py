"""Video clips as training data: probing, frame sampling and streamed decoding through PyAV (which the host already
depends on), host-free.

Frame sampling follows musubi-tuner's names (``frame_extraction``): ``head`` takes the first frames, ``chunk``
cuts the clip into back-to-back windows, ``slide`` starts a window every ``stride`` frames, ``uniform`` spreads
``samples`` windows evenly, ``full`` takes the whole clip. A window's length is a count the video VAE can encode
whole: k x temporal + 1 (temporal 4 for Wan and HunyuanVideo, 8 for LTX-2), the largest not above what was asked.
With ``target_fps`` the clip is first resampled in time (frames picked by their timestamps), as musubi-tuner's
``target_fps`` does. An image is a one-frame clip. Decoding walks the stream once and keeps only the frames a
window needs, so memory is bounded by the window, not the clip."""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

VIDEO_EXTENSIONS = (".mp4", ".webm", ".mov", ".mkv", ".avi", ".gif")
FRAME_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
MODES = ("head", "chunk", "slide", "uniform", "full")


class ClipError(ValueError):
    """A clip that cannot be read: the message names the file and what to do."""


@dataclass(frozen=True)
class ClipInfo:
    frames: int              # decodable frames
    fps: float
    size: tuple[int, int]    # (width, height)


@dataclass(frozen=True)
class FrameSampling:
    mode: str = "head"
    frames: int = 17         # frames per window (rounded down to k x temporal + 1)
    stride: int = 8          # slide: frames between window starts
    samples: int = 1         # uniform: windows per clip
    target_fps: float = 0.0  # 0 keeps the clip's own rate
    temporal: int = 4        # the VAE's temporal compression

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(f"frame sampling {self.mode!r}: use one of {', '.join(MODES)}")
        if self.frames < 1 or self.stride < 1 or self.samples < 1 or self.temporal < 1:
            raise ValueError("frames, stride, samples and temporal compression must be at least 1")


def encodable_frames(n: int, temporal: int) -> int:
    """The largest count <= n of the form k x temporal + 1 (what a causal video VAE encodes whole); 1 for n < 1."""
    return max(1, (max(n, 1) - 1) // temporal * temporal + 1)


FRAME_FOLDER_FPS = 24.0   # a folder of frames carries no rate: target_fps resamples it as if shot at 24 fps


def is_clip(path: Path) -> bool:
    """A video file, or a folder of numbered frames (see ``is_frame_folder``)."""
    return path.suffix.lower() in VIDEO_EXTENSIONS or is_frame_folder(path)


def is_frame_folder(path: Path) -> bool:
    """A folder (not hidden) whose images are all numbered frames, at least two of them: one clip."""
    if not path.is_dir() or path.name.startswith("."):
        return False
    images = [p for p in path.iterdir() if p.is_file() and p.suffix.lower() in FRAME_EXTENSIONS
              and not p.name.startswith(".")]
    return len(images) >= 2 and len(frame_files(path)) == len(images)


def frame_files(folder: Path) -> list[Path]:
    """A folder of numbered frames (``0001.png``, ``frame_12.jpg``...), in frame order; [] when it holds none."""
    numbered = []
    for p in folder.iterdir():
        m = re.search(r"(\d+)$", p.stem)
        if p.is_file() and p.suffix.lower() in FRAME_EXTENSIONS and m:
            numbered.append((int(m.group(1)), p.name, p))
    return [p for _, _, p in sorted(numbered)]


def probe_clip(path: Path) -> ClipInfo:
    """Frame count, rate and size of a clip (the container's count where it has one, else by decoding)."""
    if path.is_dir():
        return _probe_frame_folder(path)
    import av
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise ClipError(f"{path}: no video stream; remove it from the dataset or convert it to .mp4")
            stream = container.streams.video[0]
            fps = float(stream.average_rate or stream.guessed_rate or 0) or 24.0
            size = (stream.codec_context.width, stream.codec_context.height)
            frames = stream.frames or sum(1 for _ in container.decode(stream))
    except ClipError:
        raise
    except Exception as exc:  # noqa: BLE001 - av raises many kinds (InvalidDataError, OSError, ...)
        raise ClipError(f"{path}: unreadable clip ({type(exc).__name__}: {exc}); re-encode it (e.g. ffmpeg -i in "
                        "-c:v libx264 out.mp4) or remove it") from exc
    if frames < 1 or size[0] < 1:
        raise ClipError(f"{path}: the clip has no decodable frames; re-encode it or remove it")
    return ClipInfo(frames, fps, size)


def _probe_frame_folder(path: Path) -> ClipInfo:
    """Every frame's header is read (cheap: no pixels decoded), so a broken or odd-sized frame skips the folder at
    load rather than failing a step."""
    from PIL import Image
    files = frame_files(path)
    if not files:
        raise ClipError(f"{path}: no numbered frames (0001.png, 0002.png...); number them or remove the folder")
    sizes = set()
    for f in files:
        try:
            with Image.open(f) as im:
                sizes.add(im.size)
        except Exception as exc:  # noqa: BLE001 - Pillow raises many kinds
            raise ClipError(f"{path}: frame {f.name} is unreadable ({type(exc).__name__}); re-save it or remove "
                            "the folder") from exc
    if len(sizes) > 1:
        raise ClipError(f"{path}: its frames differ in size ({sorted(sizes)[:2]}...); make them one size")
    return ClipInfo(len(files), FRAME_FOLDER_FPS, sizes.pop())


def clip_digest(path: Path) -> str:
    """sha1 of a clip's bytes (a frame folder: each frame's name and bytes, in order): the latent-cache key."""
    import hashlib
    digest = hashlib.sha1()
    for f in frame_files(path) if path.is_dir() else [path]:
        if path.is_dir():
            digest.update(f.name.encode("utf-8", "surrogateescape") + b"\0")
        with open(f, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def timeline(info: ClipInfo, target_fps: float) -> list[int]:
    """Source frame indices after resampling to ``target_fps`` (all frames when 0 or not slower than the clip)."""
    if not target_fps or target_fps >= info.fps:
        return list(range(info.frames))
    step = info.fps / target_fps
    return sorted({min(info.frames - 1, int(round(i * step))) for i in range(int(info.frames / step))})


def frame_windows(info: ClipInfo, sampling: FrameSampling) -> list[tuple[int, ...]]:
    """The windows of source frame indices one clip gives, each of an encodable length."""
    frames = timeline(info, sampling.target_fps)
    if sampling.mode == "full":
        return [tuple(frames[:encodable_frames(len(frames), sampling.temporal)])]
    n = encodable_frames(min(sampling.frames, len(frames)), sampling.temporal)
    last = len(frames) - n
    if sampling.mode == "head":
        starts = [0]
    elif sampling.mode == "chunk":
        starts = list(range(0, last + 1, n))
    elif sampling.mode == "slide":
        starts = list(range(0, last + 1, sampling.stride))
    else:   # uniform
        count = min(sampling.samples, last + 1)
        starts = sorted({int(round(i * last / max(count - 1, 1))) for i in range(count)})
    return [tuple(frames[s:s + n]) for s in starts]


def read_frames(path: Path, indices: tuple[int, ...]) -> np.ndarray:
    """The frames at ``indices`` (sorted source indices) as uint8 [F, H, W, 3], decoded in one pass that keeps only
    those frames."""
    if path.is_dir():
        return read_frame_folder(frame_files(path), indices)
    import av
    wanted = sorted(set(indices))
    if not wanted:
        raise ValueError("no frames asked for")
    out: dict[int, np.ndarray] = {}
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            for i, frame in enumerate(container.decode(stream)):
                if i in wanted:
                    out[i] = frame.to_ndarray(format="rgb24")
                if i >= wanted[-1]:
                    break
    except Exception as exc:  # noqa: BLE001
        raise ClipError(f"{path}: decoding failed at frame {len(out)} ({type(exc).__name__}: {exc}); re-encode "
                        "the clip or remove it") from exc
    missing = [i for i in wanted if i not in out]
    if missing:
        raise ClipError(f"{path}: frames {missing[:3]}... could not be decoded (the clip is shorter than its header "
                        "says); re-encode it")
    return np.stack([out[i] for i in indices])


def read_frame_folder(files: list[Path], indices: tuple[int, ...]) -> np.ndarray:
    """The numbered frames at ``indices`` of a frame folder (see ``frame_files``) as uint8 [F, H, W, 3]."""
    from PIL import Image
    arrays = []
    for i in indices:
        try:
            with Image.open(files[i]) as im:
                arrays.append(np.asarray(im.convert("RGB")))
        except Exception as exc:  # noqa: BLE001 - Pillow raises many kinds
            raise ClipError(f"{files[i]}: unreadable frame ({type(exc).__name__}); re-save it or remove the "
                            "folder") from exc
    if len({a.shape for a in arrays}) > 1:
        raise ClipError(f"{files[0].parent}: its frames differ in size; make them one size")
    return np.stack(arrays)
