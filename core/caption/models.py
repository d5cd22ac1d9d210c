"""Captioning model folders: found in the host's models folder, or fetched once with huggingface_hub.

A model is a folder holding a transformers ``config.json`` (plus weights, processor and tokenizer files),
directly in a models folder or one level down (``LLM/Qwen-VL/<name>``, as some caption nodes keep them);
its name is its path below the models folder."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

# Names offered for download, and their hub repositories (all load natively in transformers, without
# trust_remote_code: the Florence-2 entries are the community conversions to the native format).
HUB_MODELS = {
    "Florence-2-base": "florence-community/Florence-2-base",
    "Florence-2-large": "florence-community/Florence-2-large",
    "Qwen2.5-VL-3B-Instruct": "Qwen/Qwen2.5-VL-3B-Instruct",
    "Qwen2.5-VL-7B-Instruct": "Qwen/Qwen2.5-VL-7B-Instruct",
    "Qwen3-VL-2B-Instruct": "Qwen/Qwen3-VL-2B-Instruct",
    "Qwen3-VL-4B-Instruct": "Qwen/Qwen3-VL-4B-Instruct",
    "Qwen3-VL-8B-Instruct": "Qwen/Qwen3-VL-8B-Instruct",
    "llama-joycaption-beta-one-hf-llava": "fancyfeast/llama-joycaption-beta-one-hf-llava",
}

# model_type in config.json -> the family the prompts are built for.
FAMILIES = {"qwen2_vl": "qwen2_vl", "qwen2_5_vl": "qwen2_5_vl", "qwen3_vl": "qwen3_vl", "qwen3_vl_moe": "qwen3_vl",
            "llava": "llava", "llava_next": "llava", "llava_onevision": "llava", "florence2": "florence2"}


class CaptionModelMissing(FileNotFoundError):
    pass


def read_config(folder: Path) -> dict:
    path = Path(folder) / "config.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: not a transformers model config ({exc}); a caption model is a folder with "
                         "config.json, the weights and the processor/tokenizer files") from exc


def family_of(folder: Path) -> str:
    """The prompt family of the model in ``folder`` (any other image-text-to-text model is treated as a
    chat model)."""
    return FAMILIES.get(read_config(folder).get("model_type", ""), "chat")


def is_captioner(folder: Path) -> bool:
    """Whether transformers loads the model in ``folder`` as image-text-to-text (models/LLM also holds the
    text-only models of prompt-writing nodes, which can't caption)."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES
    try:
        return read_config(folder).get("model_type", "") in MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES
    except ValueError:
        return False


def local_names(dirs: list[Path]) -> list[str]:
    """The caption models in ``dirs`` (one or two levels down), by their path below the folder."""
    found = set()
    for d in dirs:
        if not d.is_dir():
            continue
        for cfg in list(d.glob("*/config.json")) + list(d.glob("*/*/config.json")):
            if is_captioner(cfg.parent):
                found.add(cfg.parent.relative_to(d).as_posix())
    return sorted(found)


def find_local(name: str, dirs: list[Path]) -> Path | None:
    for d in dirs:
        folder = d / name
        if (folder / "config.json").is_file():
            return folder
    return None


def _hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def ensure_model(name: str, dirs: list[Path], offline: bool = False, cache_dir: str | None = None) -> Path:
    """The folder of caption model ``name``: found in ``dirs``; else the huggingface_hub cache's snapshot
    (no network, no copy); else downloaded once into ``dirs[0]/<name>``. Offline, or when the hub can't be
    reached, a missing model is an error that says where to put it."""
    local = find_local(name, dirs)
    if local is not None:
        return local
    target = dirs[0] / name
    repo = HUB_MODELS.get(name)
    source = f"https://huggingface.co/{repo}" if repo else "the model's hub page"
    where = (f"put the files of {source} (config.json, the *.safetensors weights, the processor and tokenizer "
             f"files) in {target}")
    if repo is None:
        raise CaptionModelMissing(f"caption model {name!r} not found in {', '.join(map(str, dirs))}: {where}")
    from huggingface_hub import snapshot_download
    try:
        return Path(snapshot_download(repo, cache_dir=cache_dir, local_files_only=True))
    except Exception:   # not (completely) in the cache
        pass
    if offline or _hub_offline():
        raise CaptionModelMissing(f"caption model {name!r} is not in {', '.join(map(str, dirs))} nor in the "
                                  f"huggingface_hub cache, and downloads are off (offline): {where}")
    # Staged beside the final folder: a broken download resumes there, and the model only appears under
    # its real name once complete.
    stage = target.with_name(f".{target.name}.download")
    try:
        snapshot_download(repo, local_dir=str(stage))
    except Exception as exc:   # no network, hub down, repo moved, gated
        raise CaptionModelMissing(f"caption model {name!r} could not be downloaded ({type(exc).__name__}: "
                                  f"{exc}): {where}") from exc
    shutil.rmtree(stage / ".cache", ignore_errors=True)
    stage.replace(target)
    return target
