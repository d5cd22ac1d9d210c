"""Running an ONNX tagger (WD14, pixai, cl_tagger, Camie; see formats.py): one session per model,
preprocessing as each model expects, real batching, and image decoding overlapped with inference."""
from __future__ import annotations

import contextlib
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
from .formats import format_input_size, preprocess_nchw, read_format, to_probabilities
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


def provider_line(requested: list[str], line: str, active: list[str]) -> str:
    """onnxruntime falls back to CPU quietly when the CUDA provider cannot load (missing CUDA/cuDNN
    libraries): say so instead of claiming CUDA."""
    if requested[0] == "CUDAExecutionProvider" and (not active or active[0] != "CUDAExecutionProvider"):
        return ("tagger runs on CPUExecutionProvider: the CUDA provider failed to load (onnxruntime's message "
                "above says which CUDA/cuDNN library is missing)")
    return line


def session_for(model_path: Path, cuda_usable: bool = False, threads: int = 0):
    """One InferenceSession per model file (and its mtime), reused across calls; a model file replaced on
    disk gets a new session and the old one is dropped. ``threads`` caps the CPU threads of inference
    (0: onnxruntime's default). Returns (session, the provider line)."""
    import onnxruntime as ort
    model_path = Path(model_path)
    key = (str(model_path), model_path.stat().st_mtime_ns, cuda_usable, threads)
    with _LOCK:
        if key not in _SESSIONS:
            for stale in [k for k in _SESSIONS if k[0] == key[0] and k[1] != key[1]]:
                del _SESSIONS[stale]
            providers, line = choose_providers(ort.get_available_providers(), cuda_usable)
            opts = ort.SessionOptions()
            if threads:
                opts.intra_op_num_threads = threads
            sess = ort.InferenceSession(str(model_path), sess_options=opts, providers=providers)
            line = provider_line(providers, line, sess.get_providers())
            log.info("Kiln: %s", line)
            _SESSIONS[key] = (sess, line)
        return _SESSIONS[key]


def input_size(session) -> int:
    """The square input side of a WD14-style model (NHWC, 3 channels), read from the model."""
    shape = session.get_inputs()[0].shape   # [batch, height, width, 3]
    if len(shape) != 4 or shape[3] != 3:
        raise ValueError(f"tagger input shape {shape} is not NHWC with 3 channels; WD14-style models take "
                         "[batch, size, size, 3] BGR images")
    size = shape[1]
    if not isinstance(size, int) or shape[2] != size:
        raise ValueError(f"tagger input has no fixed square size ({shape}); WD14 models take square NHWC images")
    return size


def batch_limit(session, wanted: int) -> int:
    """Models exported with a fixed batch dimension take exactly that many images per run."""
    dim = session.get_inputs()[0].shape[0]
    return dim if isinstance(dim, int) and dim > 0 else max(1, wanted)


def preprocess(image: Image.Image, size: int) -> np.ndarray:
    """Fit the image in a ``size`` square (bicubic), centre it on white, RGB -> BGR, float32 0..255, HWC, as
    the WD14 models were trained. Same picture as padding to a square first and resizing that (SmilingWolf's
    order) up to the one-pixel border, at a fraction of the cost: only the image's own pixels are resampled."""
    w, h = image.size
    scale = size / max(w, h)
    fit = (max(1, min(size, round(w * scale))), max(1, min(size, round(h * scale))))
    if fit != (w, h):
        # reducing_gap: a cheap box reduce() by an integer factor first, then bicubic over the rest
        image = image.resize(fit, Image.BICUBIC, reducing_gap=3.0)
    canvas = Image.new("RGB", (size, size), (255, 255, 255))
    canvas.paste(image, ((size - fit[0]) // 2, (size - fit[1]) // 2))
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


_DONE = object()   # end of the feed


@contextlib.contextmanager
def ordered_prefetch(items: list, prepare: Callable, workers: int, window: int):
    """``prepare(item)`` for each item in a thread pool, yielded in order, with at most ``window`` results decoded
    or waiting at once. Leaving the block early (an interrupt, an error) stops the preparing of what nobody will
    read and waits for the threads."""
    feed: queue.Queue = queue.Queue(maxsize=window)
    stop = threading.Event()

    def handover(value) -> bool:
        while not stop.is_set():
            try:
                feed.put(value, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def produce(pool):
        for item in items:
            future = pool.submit(prepare, item)
            if not handover(future):
                future.cancel()
                return
        handover(_DONE)

    def ordered():
        while (future := feed.get()) is not _DONE:
            yield future.result()   # a bug in preparing surfaces here, in the caller

    pool = ThreadPoolExecutor(max(1, workers), thread_name_prefix="kiln-tag-decode")
    producer = threading.Thread(target=produce, args=(pool,), name="kiln-tag-feed", daemon=True)
    producer.start()
    try:
        yield ordered()
    finally:
        stop.set()
        producer.join()
        while not feed.empty():
            left = feed.get_nowait()
            if left is not _DONE:
                left.cancel()
        pool.shutdown(wait=True)


def tag_images(images: Iterable, model_path: Path, labels: Labels, settings: TagSettings, batch_size: int = 4,
               workers: int = 2, cuda_usable: bool = False, progress: Callable[[int], None] | None = None,
               warn: Callable[[str], None] = log.warning) -> list[TagResult]:
    """images: paths or PIL images, tagged in order. Decoding + preprocessing run in a thread pool that stays
    a bounded window ahead of inference, so the session never waits on JPEG decoding and memory stays flat
    however many images there are. An exception from ``progress`` (an interrupt) stops the decoding too."""
    # On CPU, leave the decoding threads their cores: inference waiting on decoding is the usual bottleneck.
    threads = 0 if cuda_usable else max(1, (os.cpu_count() or 2) - workers)
    session, _ = session_for(Path(model_path), cuda_usable, threads)
    fmt = read_format(session, labels.kind, Path(model_path).name)
    size = format_input_size(session, fmt) if fmt.nchw else input_size(session)
    in_name = session.get_inputs()[0].name
    fixed_batch = isinstance(session.get_inputs()[0].shape[0], int)
    batch_size = batch_limit(session, batch_size)
    out_name = fmt.output or session.get_outputs()[0].name
    n_out = next(o for o in session.get_outputs() if o.name == out_name).shape[-1]
    if isinstance(n_out, int) and n_out != len(labels.names):
        raise ValueError(f"{model_path}: the model scores {n_out} tags but its tag list has {len(labels.names)}; "
                         "use the tag file that came with this model (selected_tags.csv, tag_mapping.json or metadata .json)")
    items = list(images)

    def prepare(item):
        try:
            # JPEGs decode at reduced scale when the model input is much smaller (draft mode).
            img = open_rgb(item, draft_size=(size, size)) if isinstance(item, (str, Path)) else item.convert("RGB")
        except UnreadableImage as exc:
            return item, None, str(exc)
        return item, preprocess_nchw(img, size, fmt) if fmt.nchw else preprocess(img, size), None

    results: list[TagResult] = []
    skipped: list[str] = []

    def run(batch):
        arr = np.stack([b[1] for b in batch])
        if fixed_batch and len(batch) < batch_size:   # a fixed-batch model takes exactly batch_size images
            arr = np.concatenate([arr, np.zeros((batch_size - len(batch),) + arr.shape[1:], arr.dtype)])
        probs = to_probabilities(session.run([out_name], {in_name: arr})[0][: len(batch)], fmt)
        for (item, _, _), p in zip(batch, probs):
            path = Path(item) if isinstance(item, (str, Path)) else None
            results.append(TagResult(path, tuple(postprocess(p, labels, settings))))
        if progress:
            progress(len(batch))

    batch = []
    # At most ``window`` images are decoded or waiting at once, so memory stays flat however many there are.
    with ordered_prefetch(items, prepare, workers, window=batch_size * 2 + max(1, workers)) as prepared:
        for item, arr, error in prepared:
            if arr is None:
                skipped.append(f"{Path(item).name} ({error})")
                continue
            batch.append((item, arr, error))
            if len(batch) == batch_size:
                run(batch)
                batch = []
        if batch:
            run(batch)
    if skipped:
        warn(f"Kiln: the tagger skipped {len(skipped)} unreadable image(s): {', '.join(skipped)}")
    return results


def merge_caption(existing: str | None, caption: str, mode: str) -> str:
    """The caption an image ends up with: overwrite | append (new tags after the existing ones, no
    duplicates) | keep (an existing caption wins)."""
    if mode not in ("overwrite", "append", "keep"):
        raise ValueError(f"caption mode {mode!r}: use overwrite, append or keep")
    if existing is None or mode == "overwrite":
        return caption
    if mode == "keep":
        return existing
    old = [t.strip() for t in existing.split(",") if t.strip()]
    seen = {normalise(o) for o in old}
    return ", ".join(old + [t for t in (x.strip() for x in caption.split(",")) if t and normalise(t) not in seen])


def write_caption(path: Path, caption: str, mode: str, extension: str = ".txt") -> bool:
    """Write the caption file beside ``path`` (atomically) as ``merge_caption`` says; False when nothing changed."""
    return write_captions({Path(path): caption}, mode, extension)[1] == 1


def write_captions(captions: dict, mode: str, extension: str = ".txt") -> tuple[dict, int]:
    """{image path: caption} -> ({image path: the caption its file now holds}, files written). The extension
    may be given with or without its dot."""
    from ..lora.io import atomic_write_bytes
    from ..paths import check_caption_extension
    extension = check_caption_extension(extension)   # never read (keep/append) or write another kind of file
    final, written = {}, 0
    for path, caption in captions.items():
        target = Path(path).with_suffix(extension)
        existing = target.read_text(encoding="utf-8").strip() if target.exists() else None
        final[path] = merge_caption(existing, caption, mode)
        if final[path] != existing:
            atomic_write_bytes(target, final[path].encode("utf-8"))
            written += 1
    return final, written
