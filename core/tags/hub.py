"""Tagger models: the SmilingWolf family fetched with huggingface_hub, or local files.

Layout in the models folder (what the most used ComfyUI tagger uses, so existing downloads are found):
``<dir>/<name>.onnx`` + ``<dir>/<name>.csv``; a folder ``<dir>/<name>/`` holding ``model.onnx`` +
``selected_tags.csv`` works too."""
from __future__ import annotations

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


def ensure_model(name: str, dirs: list[Path], offline: bool = False, cache_dir: str | None = None) -> TaggerFiles:
    """Local files first; else download ``SmilingWolf/<name>`` with huggingface_hub into ``dirs[0]``.
    Offline (or when the hub can't be reached) a missing model is an error that says where to put it."""
    local = find_local(name, dirs)
    if local is not None:
        return local
    target = dirs[0]
    where = (f"put model.onnx and selected_tags.csv from https://huggingface.co/SmilingWolf/{name} at "
             f"{target / (name + '.onnx')} and {target / (name + '.csv')}")
    if name not in SMILINGWOLF_MODELS:
        raise TaggerModelMissing(f"tagger model {name!r} not found in {', '.join(map(str, dirs))}: {where}")
    try:
        from huggingface_hub import hf_hub_download
        repo = f"SmilingWolf/{name}"
        model = hf_hub_download(repo, "model.onnx", cache_dir=cache_dir, local_files_only=offline)
        tags = hf_hub_download(repo, "selected_tags.csv", cache_dir=cache_dir, local_files_only=offline)
    except Exception as exc:  # offline, no network, missing repo: all end the same way for the user
        raise TaggerModelMissing(f"tagger model {name!r} is not available{' offline' if offline else ''} "
                                 f"({type(exc).__name__}): {where}") from exc
    target.mkdir(parents=True, exist_ok=True)
    files = TaggerFiles(target / f"{name}.onnx", target / f"{name}.csv")
    for src, dst in ((model, files.model), (tags, files.tags)):
        tmp = dst.with_suffix(dst.suffix + ".tmp")
        shutil.copyfile(src, tmp)
        tmp.replace(dst)
    return files
