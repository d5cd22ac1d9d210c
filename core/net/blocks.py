"""A model's blocks by name: IN00..IN11 / MID / OUT00..OUT11 for UNets, DOUBLE03, JOINT01, BLOCKS02 ...
for transformer families (see core.net.families), TE / TE1 / TE2 for text encoders, BASE for the rest.

One naming for two kinds of module name: the host's (``diffusion_model.input_blocks.4.1.proj_in``, what
training hooks; block-wise rank and learning-rate weights) and a LoRA file's kohya names, in either UNet
naming kohya writes (LDM ``lora_unet_input_blocks_4_1_...`` or diffusers ``lora_unet_down_blocks_1_...``;
inspect, compare and merge's per-block weights)."""
from __future__ import annotations

import fnmatch
import re

from .families import UNET_FAMILIES, family_block, transformer_block_name

# LDM UNet blocks, matched in host names ("." separators) and kohya names ("_" separators) alike.
_IN = re.compile(r"(?:^|[._])input_blocks[._](\d+)[._]")
_OUT = re.compile(r"(?:^|[._])output_blocks[._](\d+)[._]")
_MID = re.compile(r"(?:^|[._])middle_block[._]")
# Diffusers SD UNets (kohya's SD naming): two layers per down level then a downsampler, three per up level
# then an upsampler.
_DOWN = re.compile(r"^lora_unet_down_blocks_(\d+)_(resnets|attentions|downsamplers)_(\d+)_")
_UP = re.compile(r"^lora_unet_up_blocks_(\d+)_(resnets|attentions|upsamplers)_(\d+)_")
_TE = re.compile(r"^lora_te(\d?)_")
# Transformer families' block containers (every one in core.net.families' table); kohya/musubi names are
# the host's module names with "_", diffusers/ai-toolkit names keep a "transformer." prefix.
_DIT = re.compile(r"^(?:lora_unet_|lora_transformer_|transformer[._]|diffusion_model[._])?(double_stream_blocks|"
                  r"single_stream_blocks|double_blocks|single_blocks|joint_blocks|transformer_blocks|blocks|"
                  r"layers|noise_refiner|context_refiner)[._](\d+)[._]")


def _unet_block(name: str) -> str | None:
    if m := _IN.search(name):
        return f"IN{int(m.group(1)):02d}"
    if _MID.search(name):
        return "MID"
    if m := _OUT.search(name):
        return f"OUT{int(m.group(1)):02d}"
    return None


def block_of(host_name: str, is_text_encoder: bool, family: str = "") -> str:
    """A host module's block: UNet families IN00../MID/OUT00..; transformer families the family's blocks;
    text encoders TE; the rest BASE."""
    if is_text_encoder:
        return "TE"
    if family and family not in UNET_FAMILIES and host_name.startswith("diffusion_model."):
        return family_block(host_name[len("diffusion_model."):], family) or "BASE"
    return _unet_block(host_name) or "BASE"


def block_of_kohya(module: str) -> str:
    """A LoRA file module's block, from its kohya (or diffusers-prefixed transformer) name."""
    if m := _TE.match(module):
        return f"TE{m.group(1)}"
    if module.startswith("lora_unet_mid_block_"):
        return "MID"
    if block := _unet_block(module):
        return block
    if m := _DOWN.match(module):
        level, kind, j = int(m.group(1)), m.group(2), int(m.group(3))
        return f"IN{3 * (level + 1) if kind == 'downsamplers' else 3 * level + j + 1:02d}"
    if m := _UP.match(module):
        level, kind, j = int(m.group(1)), m.group(2), int(m.group(3))
        return f"OUT{3 * level + 2 if kind == 'upsamplers' else 3 * level + j:02d}"
    if module.startswith("lora_unet_conv_in"):
        return "IN00"
    if m := _DIT.match(module):
        return transformer_block_name(m.group(1), int(m.group(2)))
    return "BASE"


def block_order(block: str) -> tuple:
    """Sort key: text encoders, BASE, then the UNet's IN, MID, OUT, then transformer blocks."""
    kind = next((i for i, p in enumerate(("TE", "BASE", "IN", "MID", "OUT")) if block.startswith(p)), 5)
    return kind, block


def parse_weights(text: str, what: str) -> tuple[tuple[str, float], ...]:
    """'IN01=0.5, MID=1' (commas or new lines) -> (("IN01", 0.5), ("MID", 1.0)); names kept as written."""
    out = []
    for part in filter(None, (p.strip() for p in text.replace("\n", ",").split(","))):
        name, sep, value = part.partition("=")
        try:
            if not sep:
                raise ValueError
            out.append((name.strip(), float(value)))
        except ValueError:
            raise ValueError(f"{what}: {part!r} is not NAME=NUMBER (e.g. IN01=0.5, MID=1, OUT11=0, TE=0.5)") from None
    return tuple(out)


def weight_for(module: str, weights: dict[str, float] | tuple) -> float:
    """A file module's factor from NAME=NUMBER pairs; NAME is a block (IN04, MID, OUT11, TE, TE1, BASE) or an
    fnmatch pattern / prefix of kohya module names (``lora_unet_up_blocks_1_*``). The last match wins."""
    block = block_of_kohya(module)
    w = 1.0
    for pattern, value in (weights.items() if isinstance(weights, dict) else weights):
        if (pattern == block or (pattern == "TE" and block.startswith("TE"))
                or fnmatch.fnmatchcase(module, pattern) or (pattern.startswith("lora_") and module.startswith(pattern))):
            w = float(value)
    return w
