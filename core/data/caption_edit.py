"""The caption editor's file work: list a dataset's images with their captions, save one caption, add or
remove tags on many, all confined to the dataset folder.

Every path a client sends is taken relative to the dataset root and resolved with symlinks followed; the
result must still lie inside the root's real path, so '../x', an absolute path or a symlink pointing out of
the dataset is refused. Captions are read as the loader reads them (UTF-8, a BOM allowed) and written back
atomically in the same encoding (the BOM kept when the file had one), so the editor never changes what
training sees beyond the edit itself."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from ..lora.io import atomic_write_bytes
from ..tags.frequency import frequency, split
from ..tags.labels import normalise
from .caption_files import CAPTION_ALTERNATIVES
from .images import IMAGE_EXTENSIONS

BOM = b"\xef\xbb\xbf"
MAX_CAPTION_BYTES = 1 << 20


class CaptionEditError(ValueError):
    """A request the editor refuses; the message names the path and what to do."""


def _relative_parts(rel: str, what: str) -> tuple[str, ...]:
    text = (rel or "").replace("\\", "/")
    p = PurePosixPath(text)
    if not text.strip() or p.is_absolute() or (len(text) > 1 and text[1] == ":"):
        raise CaptionEditError(f"{what} {rel!r} must be a path relative to its folder")
    if any(part == ".." for part in p.parts):
        raise CaptionEditError(f"{what} {rel!r} leaves its folder ('..' is not allowed)")
    return p.parts


def dataset_root(base: Path, dataset: str, environ=os.environ) -> Path:
    """The dataset folder named as in Kiln Load Dataset's path, under the one path policy (core.paths): inside
    ``base`` (ComfyUI's input folder) or the owner's extra roots; a symlink placed directly there is followed, a
    deeper one that leaves its folder is refused (so a link nested in a dataset cannot open another folder)."""
    from ..paths import PathRefused, confine
    text = (dataset or "").strip()
    if not text:
        raise CaptionEditError("no dataset given: the Load Dataset node's path, relative to the input folder")
    try:
        root = confine(text, base, environ=environ, what="dataset")
    except PathRefused as exc:
        raise CaptionEditError(str(exc)) from None
    if not root.is_dir():
        raise CaptionEditError(f"no dataset folder {text!r} (give the Load Dataset node's path, relative to ComfyUI's "
                               "input folder)")
    return root


def member(root: Path, rel: str, what: str = "file") -> Path:
    """root/rel with symlinks resolved, refused unless it stays inside root (root must be a real path)."""
    path = Path(os.path.realpath(Path(root, *_relative_parts(rel, what))))
    if root not in path.parents:
        raise CaptionEditError(f"{what} {rel!r} leads outside the dataset folder")
    return path


def image_path(root: Path, rel: str) -> Path:
    path = member(root, rel, "image")
    if path.suffix.lower() not in IMAGE_EXTENSIONS or not path.is_file():
        raise CaptionEditError(f"{rel!r} is not an image of the dataset (supported: {', '.join(sorted(IMAGE_EXTENSIONS))})")
    return path


def caption_path(root: Path, rel_image: str, ext: str = ".txt") -> Path:
    """The caption file beside an image, with the loader's extension; refused when it would be written
    outside the dataset (a caption symlinked elsewhere)."""
    if ext not in CAPTION_ALTERNATIVES:
        raise CaptionEditError(f"caption extension {ext!r} is not one the loader reads ({', '.join(CAPTION_ALTERNATIVES)})")
    image = member(root, rel_image, "image")   # image may be unresolved-symlink-free only inside root
    if image.suffix.lower() not in IMAGE_EXTENSIONS:
        raise CaptionEditError(f"{rel_image!r} is not an image")
    rel_caption = str(PurePosixPath(rel_image.replace("\\", "/")).with_suffix(ext))
    return member(root, rel_caption, "caption")


@dataclass
class Caption:
    text: str
    bom: bool = False


def read_caption(path: Path) -> Caption:
    """As the loader reads it: UTF-8 with an optional BOM. A file that is not UTF-8 is refused rather than
    shown with replacement characters that a save would then write back."""
    if not path.is_file():
        return Caption("")
    raw = path.read_bytes()[:MAX_CAPTION_BYTES]
    bom = raw.startswith(BOM)
    try:
        text = raw[len(BOM) if bom else 0:].decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CaptionEditError(f"{path.name} is not UTF-8 text ({exc.reason} at byte {exc.start}); re-save it as UTF-8 "
                               "(the trainer reads captions as UTF-8)") from exc
    return Caption(text, bom)


def write_caption(path: Path, text: str) -> Path:
    """Atomic save in the file's own encoding (UTF-8, BOM kept if it had one); one trailing newline at most."""
    old = read_caption(path) if path.exists() else Caption("")
    text = text.replace("\r\n", "\n").rstrip()
    data = (BOM if old.bom else b"") + text.encode("utf-8")
    if len(data) > MAX_CAPTION_BYTES:
        raise CaptionEditError(f"caption for {path.name} is larger than {MAX_CAPTION_BYTES} bytes")
    return atomic_write_bytes(path, data)


def list_images(root: Path) -> list[str]:
    """Images under root (concept subfolders included; symlinked folders not entered, files whose real path
    leaves the root skipped), as sorted POSIX paths relative to root."""
    out = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in files:
            p = Path(folder, name)
            if name.startswith(".") or p.suffix.lower() not in IMAGE_EXTENSIONS or name.lower().endswith(".mask.png"):
                continue
            real = Path(os.path.realpath(p))
            if root in real.parents:
                out.append(p.relative_to(root).as_posix())
    return sorted(out)


def tags_of(text: str) -> list[str]:
    """Tags as the loader sees them: lines joined as more tags, split on commas."""
    return [t for line in text.splitlines() for t in split(line)]


def listing(root: Path, ext: str = ".txt") -> dict:
    """Everything the editor shows: each image with its caption and tags, and the dataset's tag frequencies."""
    images = []
    for rel in list_images(root):
        try:
            text, error = read_caption(caption_path(root, rel, ext)).text, None
        except CaptionEditError as exc:
            text, error = "", str(exc)
        images.append({"file": rel, "caption": text, "tags": tags_of(text), **({"error": error} if error else {})})
    return {"ext": ext, "images": images,
            "frequency": frequency([", ".join(i["tags"]) for i in images])}


def edit_tags(text: str, add: list[str], remove: list[str]) -> str:
    """Remove tags (spelling variants with _ or space, any case, count as the same tag), then append the
    added ones that are not there yet; the caption's other tags keep their order and spelling."""
    gone = {normalise(t) for t in remove if t.strip()}
    tags = [t for t in tags_of(text) if normalise(t) not in gone]
    have = {normalise(t) for t in tags}
    for t in add:
        t = t.strip()
        if t and normalise(t) not in have:
            tags.append(t)
            have.add(normalise(t))
    return ", ".join(tags)


def bulk_edit(root: Path, files: list[str], add: list[str], remove: list[str], ext: str = ".txt") -> list[str]:
    """Add/remove tags on each listed image's caption; returns the images whose caption changed. All or nothing:
    every path is checked and every caption read and edited before the first file is written, so a bad path or
    an unreadable caption changes nothing (each write is atomic)."""
    targets = [(rel, caption_path(root, rel, ext)) for rel in dict.fromkeys(files)]
    for rel, _ in targets:
        image_path(root, rel)
    edits = []
    for rel, path in targets:
        old = read_caption(path).text
        new = edit_tags(old, add, remove)
        if ", ".join(tags_of(old)) != new:
            edits.append((rel, path, new))
    for _, path, new in edits:
        write_caption(path, new)
    return [rel for rel, _, _ in edits]


# --- Requests as the routes receive them --------------------------------------------------------------------
MAX_FILES = 5000          # images one bulk edit may name
MAX_TAGS = 200            # tags one bulk edit may add or remove
MAX_TEXT = 4096           # characters of one name, tag or path


def text_field(body: dict, key: str, default: str | None = None, limit: int = MAX_TEXT) -> str:
    """A string field of a request body: present (or defaulted), a string, no NUL, within ``limit``."""
    value = body.get(key, default)
    if not isinstance(value, str):
        raise CaptionEditError(f"'{key}' must be a string")
    if "\x00" in value:
        raise CaptionEditError(f"'{key}' contains a NUL character")
    if len(value) > limit:
        raise CaptionEditError(f"'{key}' is longer than {limit} characters")
    return value


def list_field(body: dict, key: str, limit: int) -> list[str]:
    """A list-of-strings field, duplicates removed (order kept), at most ``limit`` long."""
    value = body.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise CaptionEditError(f"'{key}' must be a list of strings")
    value = list(dict.fromkeys(value))
    if len(value) > limit:
        raise CaptionEditError(f"'{key}' lists {len(value)} items; at most {limit} per request")
    for v in value:
        text_field({key: v}, key)
    return value
