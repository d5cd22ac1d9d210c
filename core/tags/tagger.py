"""Running a WD14-style ONNX tagger: one session per model, preprocessing as the models expect, real
batching, and image decoding overlapped with inference."""
from __future__ import annotations

import logging
import os
import queue
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
from PIL import Image

from ..data.images import UnreadableImage, open_rgb
from .labels import CATEGORY_IDS, Labels, display_name, normalise

log = logging.getLogger("kiln")
_SESSIONS: dict[tuple, tuple] = {}
_LOCK = threading.Lock()


@dataclass(frozen=True)
class TagSettings:
    general_threshold: float = 0.35
    character_threshold: float = 0.85
    general_mcut: bool = False
    character_mcut: bool = False
    include_rating: bool = False
    exclude: tuple[str, ...] = ()
    replace_underscores: bool = True


def choose_providers(available: list[str], cuda_usable: bool) -> tuple[list[str], str]:
    """CUDA when onnxruntime has it and a GPU is there, else CPU, with the reason said once."""
    if "CUDAExecutionProvider" in available and cuda_usable:
        return ["CUDAExecutionProvider", "CPUExecutionProvider"], "tagger runs on CUDAExecutionProvider"
    if "CUDAExecutionProvider" not in available:
        why = "this onnxruntime has no CUDA provider (install onnxruntime-gpu for GPU tagging)"
    else:
        why = "no CUDA GPU is visible"
    return ["CPUExecutionProvider"], f"tagger runs on CPUExecutionProvider: {why}"


def session_for(model_path: Path, cuda_usable: bool = False, threads: int = 0):
    """One InferenceSession per model file (and its mtime), reused across calls. ``threads`` caps the
    CPU threads of inference (0: onnxruntime's default)."""
    import onnxruntime as ort
    key = (str(model_path), model_path.stat().st_mtime_ns, cuda_usable, threads)
    with _LOCK:
        if key not in _SESSIONS:
            providers, line = choose_providers(ort.get_available_providers(), cuda_usable)
            log.info("Kiln: %s", line)
            opts = ort.SessionOptions()
            if threads:
                opts.intra_op_num_threads = threads
            sess = ort.InferenceSession(str(model_path), sess_options=opts, providers=providers)
            _SESSIONS[key] = (sess, line)
        return _SESSIONS[key]


def input_size(session) -> int:
    shape = session.get_inputs()[0].shape   # [batch, height, width, 3]
    size = shape[1]
    if not isinstance(size, int):
        raise ValueError(f"tagger input has no fixed size ({shape}); WD14 models take square NHWC images")
    return size


def preprocess(image: Image.Image, size: int) -> np.ndarray:
    """Pad to a white square, resize, RGB -> BGR, float32 0..255, HWC (as the WD14 models were trained)."""
    w, h = image.size
    side = max(w, h)
    canvas = Image.new("RGB", (side, side), (255, 255, 255))
    canvas.paste(image, ((side - w) // 2, (side - h) // 2))
    if side != size:
        canvas = canvas.resize((size, size), Image.BICUBIC, reducing_gap=3.0)
    return np.asarray(canvas, dtype=np.float32)[:, :, ::-1].copy()


def mcut_threshold(probs: np.ndarray) -> float:
    """Maximum Cut: the midpoint of the largest gap between consecutive sorted probabilities."""
    if len(probs) < 2:
        return 0.5
    p = np.sort(probs)[::-1]
    gaps = p[:-1] - p[1:]
    i = int(np.argmax(gaps))
    return float((p[i] + p[i + 1]) / 2)


def postprocess(probs: np.ndarray, labels: Labels, s: TagSettings) -> list[tuple[str, float]]:
    """(tag, confidence) above the thresholds, characters first then general, each by confidence."""
    excluded = {normalise(t) for t in s.exclude}
    out = []
    for cat, threshold, mcut, floor in (("character", s.character_threshold, s.character_mcut, 0.15),
                                        ("general", s.general_threshold, s.general_mcut, 0.0)):
        idx = labels.indices(CATEGORY_IDS[cat])
        if not idx:
            continue
        p = probs[idx]
        t = max(mcut_threshold(p), floor) if mcut else threshold
        chosen = sorted(((labels.names[i], float(probs[i])) for i in idx if probs[i] >= t), key=lambda x: -x[1])
        out += [(n, c) for n, c in chosen if normalise(n) not in excluded]
    if s.include_rating:
        idx = labels.indices(CATEGORY_IDS["rating"])
        if idx:
            best = max(idx, key=lambda i: probs[i])
            out.insert(0, (labels.names[best], float(probs[best])))
    return [(display_name(n, s.replace_underscores), c) for n, c in out]


@dataclass(frozen=True)
class TagResult:
    path: Path | None
    tags: tuple[tuple[str, float], ...]

    @property
    def caption(self) -> str:
        return ", ".join(t for t, _ in self.tags)


def tag_images(images: Iterable, model_path: Path, labels: Labels, settings: TagSettings, batch_size: int = 4,
               workers: int = 2, cuda_usable: bool = False, progress: Callable[[int], None] | None = None,
               warn: Callable[[str], None] = log.warning) -> list[TagResult]:
    """images: paths or PIL images. Decoding + preprocessing run in a thread pool that stays ahead of
    inference (a bounded queue), so the session never waits on JPEG decoding."""
    # On CPU, leave the decoding threads their cores: inference waiting on decoding is the usual bottleneck.
    threads = 0 if cuda_usable else max(1, (os.cpu_count() or 2) - workers)
    session, _ = session_for(Path(model_path), cuda_usable, threads)
    size = input_size(session)
    in_name = session.get_inputs()[0].name
    items = list(images)

    def prepare(item):
        try:
            # JPEGs decode at reduced scale when the model input is much smaller (draft mode).
            img = open_rgb(item, draft_size=(size, size)) if isinstance(item, (str, Path)) else item.convert("RGB")
        except UnreadableImage as exc:
            return item, None, str(exc)
        return item, preprocess(img, size), None

    results: list[TagResult] = []
    skipped: list[str] = []
    ready: queue.Queue = queue.Queue(maxsize=max(2, batch_size * 2))

    def produce():
        with ThreadPoolExecutor(max(1, workers)) as pool:
            for prepared in pool.map(prepare, items):
                ready.put(prepared)
        ready.put(None)
    threading.Thread(target=produce, daemon=True).start()
    batch = []

    def run(batch):
        probs = session.run(None, {in_name: np.stack([b[1] for b in batch])})[0]
        for (item, _, _), p in zip(batch, probs):
            path = Path(item) if isinstance(item, (str, Path)) else None
            results.append(TagResult(path, tuple(postprocess(p, labels, settings))))
        if progress:
            progress(len(batch))
    while True:
        got = ready.get()
        if got is None:
            break
        if got[1] is None:
            skipped.append(f"{Path(got[0]).name} ({got[2]})")
            continue
        batch.append(got)
        if len(batch) == batch_size:
            run(batch)
            batch = []
    if batch:
        run(batch)
    if skipped:
        warn(f"Kiln: the tagger skipped {len(skipped)} unreadable image(s): {', '.join(skipped)}")
    return results


def write_caption(path: Path, caption: str, mode: str, extension: str = ".txt") -> bool:
    """overwrite | append (new tags after the existing ones, no duplicates) | keep (existing files win)."""
    from ..lora.io import atomic_write_bytes
    target = path.with_suffix(extension)
    if mode == "keep" and target.exists():
        return False
    if mode == "append" and target.exists():
        old = [t.strip() for t in target.read_text(encoding="utf-8").split(",") if t.strip()]
        new = [t for t in (x.strip() for x in caption.split(",")) if t and normalise(t) not in {normalise(o) for o in old}]
        caption = ", ".join(old + new)
    atomic_write_bytes(target, caption.encode("utf-8"))
    return True
