"""Caption files beside the images: their encodings, which file belongs to which image, and the warnings
about captions that are missing, empty, orphaned or under another extension.

Caption files that are not UTF-8 are read as Windows' Western code page (what Notepad wrote before UTF-8),
which also covers Latin-1 text; nothing is replaced with U+FFFD."""
from __future__ import annotations

from collections import Counter
from pathlib import Path

from .config import DatasetConfig

CAPTION_ALTERNATIVES = (".txt", ".caption", ".tags")
LEGACY_CAPTION_ENCODING = "cp1252"


def decode_caption_bytes(data: bytes) -> tuple[str, str]:
    """(text, encoding): UTF-8 (a BOM dropped, as Windows editors write it), else cp1252, else Latin-1
    (cp1252 leaves five bytes undefined; Latin-1 maps every byte), never a lossy replacement."""
    for encoding in ("utf-8-sig", LEGACY_CAPTION_ENCODING, "latin-1"):
        try:
            return data.decode(encoding), encoding
        except UnicodeDecodeError:
            continue
    raise AssertionError("latin-1 decodes any bytes")


def read_caption_file(path: Path, notes: dict | None = None) -> str:
    text, encoding = decode_caption_bytes(path.read_bytes())
    if encoding != "utf-8-sig" and notes is not None:
        notes.setdefault("legacy", []).append((path, encoding))
    # Several lines are joined as more tags.
    return ", ".join(line.strip().strip(",").strip() for line in text.splitlines() if line.strip())


def captions_for(folder: Path, class_text: str, images: list[Path], cfg: DatasetConfig, notes: dict) -> list[str]:
    """The raw caption of each image of one concept folder; what is odd about them is noted in ``notes``
    (warned about by caption_warnings once the images are read)."""
    if cfg.caption_source == "none":
        return [""] * len(images)
    if cfg.caption_source == "phrase":
        return [cfg.caption_phrase] * len(images)
    out = []
    ext = cfg.caption_extension
    # Caption files whose image is missing (renamed or deleted): they train nothing.
    stems = {img.stem for img in images}
    notes.setdefault("orphans", []).extend(
        p for p in sorted(folder.glob(f"*{ext}")) if p.is_file() and p.stem not in stems
        and not p.name.startswith(".") and p.suffix == ext)
    # Images without any caption are normal in a class-text-only concept; a mix is worth a warning.
    mixed = any(img.with_suffix(ext).is_file() for img in images)
    for img in images:
        cap_file = img.with_suffix(ext)
        caption = read_caption_file(cap_file, notes) if cap_file.is_file() else None
        if caption is None:
            alt = next((a for a in CAPTION_ALTERNATIVES if a != ext and img.with_suffix(a).is_file()), None)
            if alt:
                notes.setdefault("other_ext", Counter())[(folder, alt)] += 1
            elif mixed:
                notes.setdefault("no_caption", {}).setdefault((folder, class_text), []).append(img)
        elif not caption:
            notes.setdefault("empty", []).append(cap_file.name)
            caption = None
        # kohya: an image without a caption trains on its folder's class text.
        out.append(caption if caption is not None else class_text)
    return out


def caption_warnings(notes: dict, cfg: DatasetConfig, warn, unreadable: set | None = None) -> None:
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
