"""What the export needs of the host: ComfyUI's folders (dataset and model paths) and a MODEL's family."""
from __future__ import annotations

import json
import struct
from pathlib import Path

import folder_paths

from ..core.export import ExportRecipe, family_from_keys, recipe_from_prompt
from . import resolve_input_path

# Older hosts name the diffusion-model folder "unet", newer ones "diffusion_models" (with "unet" kept as
# an alias); text encoders were "clip" before "text_encoders". Tried in order, by folder registration.
_FOLDER_ALIASES = {"diffusion_models": ("diffusion_models", "unet"), "text_encoders": ("text_encoders", "clip")}


def resolve_model(kind: str, name: str) -> str:
    """The full path of a model file the graph names; the bare name where the host does not find it
    (the export then names it, and the user fixes the path)."""
    for folder in _FOLDER_ALIASES.get(kind, (kind,)):
        if folder in folder_paths.folder_names_and_paths:
            path = folder_paths.get_full_path(folder, name)
            if path:
                return str(Path(path).resolve())
    return name


def family_of_model(model) -> str:
    """The family of a loaded MODEL (the host's detected model class)."""
    try:
        from .families import family_of
    except ImportError:  # older checkouts without host.families: read it from the layer names
        keys = model.model.diffusion_model.state_dict().keys()
        return family_from_keys(f"model.diffusion_model.{k}" for k in keys) or type(model.model.model_config).__name__.lower()
    return family_of(model)


def family_of_file(path: str) -> str | None:
    """The family of a .safetensors checkpoint or diffusion model from its header only (no weights read)."""
    p = Path(path)
    if p.suffix != ".safetensors" or not p.is_file():
        return None
    with p.open("rb") as f:
        size = struct.unpack("<Q", f.read(8))[0]
        if size > 100_000_000:
            raise ValueError(f"{p}: not a safetensors file (header of {size} bytes)")
        header = json.loads(f.read(size))
    return family_from_keys(k for k in header if k != "__metadata__")


def recipe(prompt: dict, family: str | None = None, train_node: str | None = None) -> ExportRecipe:
    """The prompt's recipe with ComfyUI's paths; the family from the model file when not given."""
    draft = recipe_from_prompt(prompt, family or "unknown", train_node, resolve_input_path, resolve_model)
    if family:
        return draft
    model_file = draft.model_files.get("checkpoint") or draft.model_files.get("diffusion_model") or ""
    found = family_of_file(model_file)
    if found is None:
        raise ValueError(f"cannot tell the model family of {model_file or 'the workflow (no model loader found)'}; "
                         "give it with --family (e.g. sdxl, flux1-dev, qwen-image, wan)")
    return recipe_from_prompt(prompt, found, train_node, resolve_input_path, resolve_model)
