"""Tagger models: the SmilingWolf family fetched with huggingface_hub, or local files.

Layout in the models folder (what the most used ComfyUI tagger uses, so existing downloads are found):
``<dir>/<name>.onnx`` + ``<dir>/<name>.csv``; a folder ``<dir>/<name>/`` holding ``model.onnx`` +
``selected_tags.csv`` works too."""
from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

SMILINGWOLF_MODELS = (
    "wd-v1-4-moat-tagger-v2", "wd-v1-4-convnext-tagger-v2", "wd-v1-4-convnextv2-tagger-v2",
    "wd-v1-4-swinv2-tagger-v2", "wd-v1-4-vit-tagger-v2", "wd-swinv2-tagger-v3", "wd-vit-tagger-v3",
    "wd-convnext-tagger-v3", "wd-vit-large-tagger-v3", "wd-eva02-large-tagger-v3",
)


@dataclass(frozen=True)
class TaggerFiles:
    model: Path
    tags: Path


class TaggerModelMissing(FileNotFoundError):
    pass


def find_local(name: str, dirs: list[Path]) -> TaggerFiles | None:
    for d in dirs:
        flat = TaggerFiles(d / f"{name}.onnx", d / f"{name}.csv")
        if flat.model.is_file() and flat.tags.is_file():
            return flat
        nested = TaggerFiles(d / name / "model.onnx", d / name / "selected_tags.csv")
        if nested.model.is_file() and nested.tags.is_file():
            return nested
    return None


def local_names(dirs: list[Path]) -> list[str]:
    found = set()
    for d in dirs:
        if d.is_dir():
            found.update(p.stem for p in d.glob("*.onnx") if p.with_suffix(".csv").is_file())
            found.update(p.parent.name for p in d.glob("*/model.onnx") if (p.parent / "selected_tags.csv").is_file())
    return sorted(found)


HUB_FILES = ("model.onnx", "selected_tags.csv")


def _hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def _place(sources: list[str], files: TaggerFiles, move: bool = False) -> None:
    """Put the hub's files at the folder's names, atomically: moved from a staging folder, else hard-linked
    from huggingface_hub's cache (no second copy of a model that can be 1 GB), else copied."""
    for src, dst in zip(sources, (files.model, files.tags)):
        src = os.path.realpath(src)   # the cache holds symlinks to blobs
        tmp = dst.with_name(dst.name + ".tmp")
        tmp.unlink(missing_ok=True)
        if move:
            os.replace(src, tmp)
        else:
            try:
                os.link(src, tmp)
            except OSError:   # another filesystem, or links not allowed
                shutil.copyfile(src, tmp)
        tmp.replace(dst)


def ensure_model(name: str, dirs: list[Path], offline: bool = False, cache_dir: str | None = None) -> TaggerFiles:
    """The files of tagger ``name``: found in ``dirs``; else taken from huggingface_hub's cache (no network);
    else downloaded from ``SmilingWolf/<name>`` straight into ``dirs[0]``. Offline (``offline`` or
    HF_HUB_OFFLINE=1), or when the hub can't be reached, a missing model is an error that says where to put it."""
    local = find_local(name, dirs)
    if local is not None:
        return local
    target = dirs[0]
    where = (f"put model.onnx and selected_tags.csv from https://huggingface.co/SmilingWolf/{name} at "
             f"{target / (name + '.onnx')} and {target / (name + '.csv')} (or both, keeping their names, in "
             f"{target / name})")
    if name not in SMILINGWOLF_MODELS:
        raise TaggerModelMissing(f"tagger model {name!r} not found in {', '.join(map(str, dirs))}: {where}")
    from huggingface_hub import hf_hub_download
    repo = f"SmilingWolf/{name}"
    files = TaggerFiles(target / f"{name}.onnx", target / f"{name}.csv")
    try:
        cached = [hf_hub_download(repo, f, cache_dir=cache_dir, local_files_only=True) for f in HUB_FILES]
    except Exception:   # not (all) in the cache: LocalEntryNotFoundError and friends
        cached = None
    if cached is not None:
        target.mkdir(parents=True, exist_ok=True)
        _place(cached, files)
        return files
    offline = offline or _hub_offline()
    if offline:
        raise TaggerModelMissing(f"tagger model {name!r} is not in {', '.join(map(str, dirs))} nor in the "
                                 f"huggingface_hub cache, and downloads are off (offline): {where}")
    # A staging folder beside the final files: huggingface_hub resumes a broken download there next time,
    # and the model only appears under its real name once complete.
    stage = target / f".{name}.download"
    try:
        got = [hf_hub_download(repo, f, local_dir=str(stage)) for f in HUB_FILES]
    except Exception as exc:   # no network, hub down, repo moved: all end the same way for the user
        raise TaggerModelMissing(f"tagger model {name!r} could not be downloaded ({type(exc).__name__}: {exc}): "
                                 f"{where}") from exc
    _place(got, files, move=True)
    shutil.rmtree(stage, ignore_errors=True)
    return files
