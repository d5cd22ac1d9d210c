"""One path policy for every node input and route that names a folder or a file (host-free).

Anyone who reaches a ComfyUI server can queue any node with any input, so a folder input is read only inside the
folders Kiln is allowed to touch: ComfyUI's input folder, and the roots the owner opts into with the environment
variable ``KILN_EXTRA_ROOTS`` (folders separated by the OS path separator). A symlink placed directly in an allowed
root by the owner is followed (that is how a dataset elsewhere on disk is shared into ``input/``); a symlink deeper
down that leaves the folder holding it is refused. Caption files are read and written only with caption-like
extensions (``.txt``, ``.caption``, ``.tags``, and those the owner adds with ``KILN_CAPTION_EXTENSIONS``), so no node
ever reads or returns another kind of file's text. Errors name the rule and the path as the user gave it, never an
absolute path of the machine."""
from __future__ import annotations

import os
from pathlib import Path

EXTRA_ROOTS_ENV = "KILN_EXTRA_ROOTS"
CAPTION_EXTENSIONS_ENV = "KILN_CAPTION_EXTENSIONS"
CAPTION_EXTENSIONS = (".txt", ".caption", ".tags")


class PathRefused(ValueError):
    """A path outside the folders Kiln may touch; the message says the rule and the fix."""


def extra_roots(environ=os.environ) -> list[Path]:
    text = environ.get(EXTRA_ROOTS_ENV, "")
    return [Path(p).expanduser() for p in text.split(os.pathsep) if p.strip()]


def caption_extensions(environ=os.environ) -> tuple[str, ...]:
    extra = [e.strip() for e in environ.get(CAPTION_EXTENSIONS_ENV, "").split(",") if e.strip()]
    return CAPTION_EXTENSIONS + tuple(e if e.startswith(".") else "." + e for e in extra)


def check_caption_extension(extension: str, environ=os.environ) -> str:
    """The extension with its dot, or PathRefused when it is not a caption extension."""
    ext = extension.strip()
    ext = ext if ext.startswith(".") else "." + ext
    allowed = caption_extensions(environ)
    if ext.lower() not in allowed or "/" in ext or "\\" in ext or "\x00" in ext:
        raise PathRefused(f"caption extension {extension!r} is not a caption extension: use one of "
                          f"{', '.join(allowed)} (the server's owner can add others with {CAPTION_EXTENSIONS_ENV})")
    return ext


def _inside(path: Path, root: Path) -> bool:
    try:
        path.relative_to(root)
        return True
    except ValueError:
        return False


def _walk(root: Path, rel: Path, shown: str) -> Path:
    """``root / rel`` with its symlinks followed: the first component may be a link placed in the root by its owner;
    any deeper link must stay inside the folder that holds it."""
    current = root.resolve()
    for depth, part in enumerate(rel.parts):
        step = current / part
        if step.is_symlink():
            target = step.resolve()
            if depth > 0 and not _inside(target, current):
                raise PathRefused(f"{shown!r} goes through a link that leaves its folder; Kiln follows only links "
                                  "placed directly in the input folder (or an allowed root): link the whole dataset "
                                  "folder there instead")
            current = target
        else:
            current = step
    return current


def confine(path_text: str, input_dir: Path, environ=os.environ, what: str = "folder") -> Path:
    """The real path ``path_text`` names (relative paths are read from ComfyUI's input folder), or PathRefused when
    it lies outside the input folder and the owner's extra roots."""
    text = str(path_text).strip()
    if "\x00" in text:
        raise PathRefused(f"{what}: the path contains a NUL character")
    given = Path(text).expanduser()
    candidate = given if given.is_absolute() else Path(input_dir) / given
    lexical = Path(os.path.normpath(candidate))
    for root in [Path(input_dir), *extra_roots(environ)]:
        base = Path(os.path.normpath(root.expanduser().absolute()))
        if _inside(lexical, base):
            return _walk(base, lexical.relative_to(base), text)
        resolved_base = base.resolve()
        if _inside(lexical, resolved_base):
            return _walk(resolved_base, lexical.relative_to(resolved_base), text)
    raise PathRefused(f"{what} {text!r} is outside ComfyUI's input folder: Kiln reads only folders inside it (give a "
                      f"path relative to it, e.g. 'my_dataset', or link your folder into it); the server's owner can "
                      f"allow other folders with {EXTRA_ROOTS_ENV}")
