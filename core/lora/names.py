"""kohya's module names: the prefixes a file's keys start with, how a module path is spelled, and the error
every reader raises for a key it cannot place. The format readers and the transformer layouts both build on
these, so neither imports the other for them."""
from __future__ import annotations

KOHYA_PREFIXES = ("lora_unet_", "lora_te_", "lora_te1_", "lora_te2_", "lora_te3_", "lora_prior_unet_")


class LoraFormatError(ValueError):
    pass


def kohya_name(prefix: str, module_path: str) -> str:
    """kohya's spelling of a module: its prefix (``lora_unet_``, ``lora_te1_``, ...) and the module's path
    with "_" for "." (``input_blocks.1.1.proj_in`` -> ``lora_unet_input_blocks_1_1_proj_in``)."""
    return prefix + module_path.replace(".", "_")
