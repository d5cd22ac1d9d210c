"""Export a graph's training recipe to the big trainers' config files (kohya sd-scripts, musubi-tuner,
accelerate, diffusion-pipe). Host-free: the caller hands in the API-format prompt and resolves paths."""
from .recipe import ExportError, ExportRecipe, family_from_keys, recipe_from_prompt
from .writers import FORMATS, export_files, write_export

__all__ = ["ExportError", "ExportRecipe", "FORMATS", "export_files", "family_from_keys", "recipe_from_prompt",
           "write_export"]
