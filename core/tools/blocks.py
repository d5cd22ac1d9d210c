"""Block names of kohya module names, in the IN00..IN11 / MID / OUT00..OUT11 / TE / BASE naming that
training's block weights use (core.net.blocks), whichever UNet naming the LoRA was saved with: LDM
(``input_blocks_4_1_...``) or diffusers (``down_blocks_1_attentions_0_...``, which kohya writes for SD)."""
from __future__ import annotations

import fnmatch
import re

_LDM = [(re.compile(r"^lora_unet_input_blocks_(\d+)_"), "IN"), (re.compile(r"^lora_unet_output_blocks_(\d+)_"), "OUT")]
_DOWN = re.compile(r"^lora_unet_down_blocks_(\d+)_(resnets|attentions|downsamplers)_(\d+)_")
_UP = re.compile(r"^lora_unet_up_blocks_(\d+)_(resnets|attentions|upsamplers)_(\d+)_")
_TE = re.compile(r"^lora_te(\d?)_")
# Transformer families' blocks (kohya/musubi names are the host's module names with "_"), named as
# core.net.families.family_block names them for training's block weights.
_DIT = re.compile(r"^(?:lora_unet_|lora_transformer_|transformer[._]|diffusion_model[._])?(double_stream_blocks|"
                  r"single_stream_blocks|double_blocks|single_blocks|joint_blocks|transformer_blocks|blocks|"
                  r"layers|noise_refiner|context_refiner)[._](\d+)[._]")
_DIT_NAMES = {"double_stream_blocks": "DOUBLE", "single_stream_blocks": "SINGLE", "double_blocks": "DOUBLE",
              "single_blocks": "SINGLE", "joint_blocks": "JOINT", "transformer_blocks": "TRANSFORMER",
              "blocks": "BLOCKS", "layers": "LAYERS", "noise_refiner": "NOISE_REFINER",
              "context_refiner": "CONTEXT_REFINER"}


def block_of_kohya(module: str) -> str:
    if m := _TE.match(module):
        return f"TE{m.group(1)}"
    for pattern, prefix in _LDM:
        if m := pattern.match(module):
            return f"{prefix}{int(m.group(1)):02d}"
    if module.startswith(("lora_unet_middle_block_", "lora_unet_mid_block_")):
        return "MID"
    # diffusers SD UNets: two layers per down level then a downsampler, three per up level then an upsampler
    if m := _DOWN.match(module):
        level, kind, j = int(m.group(1)), m.group(2), int(m.group(3))
        return f"IN{3 * (level + 1) if kind == 'downsamplers' else 3 * level + j + 1:02d}"
    if m := _UP.match(module):
        level, kind, j = int(m.group(1)), m.group(2), int(m.group(3))
        return f"OUT{3 * level + 2 if kind == 'upsamplers' else 3 * level + j:02d}"
    if module.startswith("lora_unet_conv_in"):
        return "IN00"
    if m := _DIT.match(module):
        return f"{_DIT_NAMES[m.group(1)]}{int(m.group(2)):02d}"
    return "BASE"


def block_order(block: str) -> tuple:
    kind = next((i for i, p in enumerate(("TE", "BASE", "IN", "MID", "OUT")) if block.startswith(p)), 5)
    return kind, block


def weight_for(module: str, weights: dict[str, float] | tuple) -> float:
    """A module's factor from NAME=NUMBER pairs; NAME is a block (IN04, MID, OUT11, TE, TE1, BASE) or an
    fnmatch pattern / prefix of kohya module names (``lora_unet_up_blocks_1_*``). The last match wins."""
    block = block_of_kohya(module)
    w = 1.0
    for pattern, value in (weights.items() if isinstance(weights, dict) else weights):
        if (pattern == block or (pattern == "TE" and block.startswith("TE"))
                or fnmatch.fnmatchcase(module, pattern) or (pattern.startswith("lora_") and module.startswith(pattern))):
            w = float(value)
    return w
