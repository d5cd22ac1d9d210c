"""Tagger models: the SmilingWolf family, pixai, Camie and cl_tagger fetched with huggingface_hub, or
local files.

Layout in the models folder (what the most used ComfyUI tagger uses, so existing downloads are found):
``<dir>/<name>.onnx`` + its tag file ``<dir>/<name>.csv`` (or ``<name>.json``, ``<name>_tag_mapping.json``,
``<name>-metadata.json`` for cl_tagger and Camie); a folder ``<dir>/<name>/`` holding ``model.onnx`` (or
``<name>.onnx``) + ``selected_tags.csv`` / ``tag_mapping.json`` / ``<name>-metadata.json`` works too."""
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


# The other taggers: name -> (hub repository, (model file, tag file) in it, the tag file's local suffix).
OTHER_HUB_TAGGERS = {
    "pixai-tagger-v0.9": ("deepghs/pixai-tagger-v0.9-onnx", ("model.onnx", "selected_tags.csv"), ".csv"),
    "camie-tagger-v2": ("Camais03/camie-tagger-v2", ("camie-tagger-v2.onnx", "camie-tagger-v2-metadata.json"),
                        ".json"),
    "cl_tagger_1_01": ("cella110n/cl_tagger", ("cl_tagger_1_01/model.onnx", "cl_tagger_1_01/tag_mapping.json"),
                       ".json"),
    "cl_tagger_1_02": ("cella110n/cl_tagger", ("cl_tagger_1_02/model.onnx", "cl_tagger_1_02/tag_mapping.json"),
                       ".json"),
}
HUB_TAGGERS = tuple(SMILINGWOLF_MODELS) + tuple(OTHER_HUB_TAGGERS)

# Tag files beside <name>.onnx, and inside a <name>/ folder, in the order they are looked for.
FLAT_TAG_FILES = ("{name}.csv", "{name}.json", "{name}_tag_mapping.json", "{name}-metadata.json")
NESTED_TAG_FILES = ("selected_tags.csv", "tag_mapping.json", "{name}-metadata.json", "metadata.json")


@dataclass(frozen=True)
class TaggerFiles:
    model: Path
    tags: Path


class TaggerModelMissing(FileNotFoundError):
    pass


def _first_file(folder: Path, patterns, name: str) -> Path | None:
    return next((folder / p.format(name=name) for p in patterns if (folder / p.format(name=name)).is_file()), None)


def find_local(name: str, dirs: list[Path]) -> TaggerFiles | None:
    for d in dirs:
        tags = _first_file(d, FLAT_TAG_FILES, name)
        if (d / f"{name}.onnx").is_file() and tags is not None:
            return TaggerFiles(d / f"{name}.onnx", tags)
        folder = d / name
        model = _first_file(folder, ("model.onnx", "{name}.onnx"), name)
        tags = _first_file(folder, NESTED_TAG_FILES, name)
        if model is not None and tags is not None:
            return TaggerFiles(model, tags)
    return None


def local_names(dirs: list[Path]) -> list[str]:
    found = set()
    for d in dirs:
        if d.is_dir():
            candidates = {p.stem for p in d.glob("*.onnx")} | {p.parent.name for p in d.glob("*/*.onnx")}
            # dot-names: a download still being staged
            found.update(n for n in candidates if not n.startswith(".") and find_local(n, [d]) is not None)
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
    else downloaded from ``SmilingWolf/<name>`` (or the repository in OTHER_HUB_TAGGERS) into ``dirs[0]``. Offline (``offline`` or
    HF_HUB_OFFLINE=1), or when the hub can't be reached, a missing model is an error that says where to put it."""
    local = find_local(name, dirs)
    if local is not None:
        return local
    target = dirs[0]
    repo, hub_files, suffix = OTHER_HUB_TAGGERS.get(name, (f"SmilingWolf/{name}", HUB_FILES, ".csv"))
    if name in SMILINGWOLF_MODELS or name not in OTHER_HUB_TAGGERS:
        where = (f"put model.onnx and selected_tags.csv from https://huggingface.co/SmilingWolf/{name} at "
                 f"{target / (name + '.onnx')} and {target / (name + '.csv')} (or both, keeping their names, in "
                 f"{target / name})")
    else:
        where = (f"put {hub_files[0]} and {hub_files[1]} from https://huggingface.co/{repo} at "
                 f"{target / (name + '.onnx')} and {target / (name + suffix)}")
    if name not in HUB_TAGGERS:
        raise TaggerModelMissing(f"tagger model {name!r} not found in {', '.join(map(str, dirs))}: {where}")
    from huggingface_hub import hf_hub_download
    files = TaggerFiles(target / f"{name}.onnx", target / f"{name}{suffix}")
    try:
        cached = [hf_hub_download(repo, f, cache_dir=cache_dir, local_files_only=True) for f in hub_files]
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
        got = [hf_hub_download(repo, f, local_dir=str(stage)) for f in hub_files]
    except Exception as exc:   # no network, hub down, repo moved: all end the same way for the user
        raise TaggerModelMissing(f"tagger model {name!r} could not be downloaded ({type(exc).__name__}: {exc}): "
                                 f"{where}") from exc
    _place(got, files, move=True)
    shutil.rmtree(stage, ignore_errors=True)
    return files
