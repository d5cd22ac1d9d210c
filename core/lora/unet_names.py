"""kohya's UNet module names (diffusers-style: ``lora_unet_down_blocks_0_attentions_0_proj_in``) for an
SD-family UNet stored in LDM layout (``input_blocks.1.1.proj_in``), worked out from the state-dict keys
alone, so host-free tools (the CLI's extract) write the names training writes. kohya's sd-scripts, LyCORIS,
diffusers and A1111 all match these; LDM-style names load only in ComfyUI and A1111.

The LDM layout: ``input_blocks.0`` is conv_in; then per level, one entry per res block (``.0`` the
ResBlock, ``.1`` its transformer when the level has attention) and, between levels, a downsampler
(``.0.op``); ``middle_block`` is ResBlock, transformer, ResBlock; ``output_blocks`` mirror the levels with
one more res block each, the last of a level ending in an upsampler (``.<last>.conv``).
"""
from __future__ import annotations

import re

from .names import kohya_name

_RESNET = {"in_layers.0": "norm1", "in_layers.2": "conv1", "emb_layers.1": "time_emb_proj",
           "out_layers.0": "norm2", "out_layers.3": "conv2", "skip_connection": "conv_shortcut"}
_BASIC = {"input_blocks.0.0": "conv_in", "time_embed.0": "time_embedding.linear_1",
          "time_embed.2": "time_embedding.linear_2", "out.0": "conv_norm_out", "out.2": "conv_out",
          "label_emb.0.0": "class_embedding.linear_1", "label_emb.0.2": "class_embedding.linear_2"}


def _sub(path: str, prefix: str, target: str) -> str | None:
    """Rename ``prefix`` + rest to ``target`` + rest, the rest mapped with the ResBlock table when
    ``target`` is a resnet."""
    if not (path == prefix or path.startswith(prefix + ".")):
        return None
    rest = path[len(prefix) + 1:]
    if ".resnets." in target:
        if rest not in _RESNET:
            return None
        rest = _RESNET[rest]
    return f"{target}.{rest}" if rest else target


def ldm_to_diffusers_unet(module_paths) -> dict[str, str]:
    """LDM module path -> diffusers module path, for the paths given (e.g. every ``.weight`` key of a
    UNet state dict without the ``.weight`` and the ``model.diffusion_model.`` prefix). Paths that do not
    fit the SD UNet layout are left out."""
    paths = sorted(set(module_paths))
    blocks: dict[tuple[str, int], set[str]] = {}
    for p in paths:
        m = re.match(r"(input_blocks|output_blocks)\.(\d+)\.(.*)$", p)
        if m:
            blocks.setdefault((m.group(1), int(m.group(2))), set()).add(m.group(3))
    rename: dict[str, str] = {}       # LDM block prefix -> diffusers prefix
    level, i = 0, 0
    for k in sorted(n for kind, n in blocks if kind == "input_blocks"):
        if k == 0:
            continue
        inner = blocks[("input_blocks", k)]
        if any(s.startswith("0.op") for s in inner):
            rename[f"input_blocks.{k}.0.op"] = f"down_blocks.{level}.downsamplers.0.conv"
            level, i = level + 1, 0
            continue
        rename[f"input_blocks.{k}.0"] = f"down_blocks.{level}.resnets.{i}"
        if any(s.startswith("1.") for s in inner):
            rename[f"input_blocks.{k}.1"] = f"down_blocks.{level}.attentions.{i}"
        i += 1
    level, i = 0, 0
    for k in sorted(n for kind, n in blocks if kind == "output_blocks"):
        inner = blocks[("output_blocks", k)]
        rename[f"output_blocks.{k}.0"] = f"up_blocks.{level}.resnets.{i}"
        if any(s.startswith("1.") and not s.startswith("1.conv") for s in inner):
            rename[f"output_blocks.{k}.1"] = f"up_blocks.{level}.attentions.{i}"
        up = next((s.split(".")[0] for s in inner if re.match(r"\d+\.conv(\.|$)", s)), None)
        if up is not None:
            rename[f"output_blocks.{k}.{up}.conv"] = f"up_blocks.{level}.upsamplers.0.conv"
            level, i = level + 1, 0
        else:
            i += 1
    rename.update({"middle_block.0": "mid_block.resnets.0", "middle_block.1": "mid_block.attentions.0",
                   "middle_block.2": "mid_block.resnets.1"})
    out = {}
    for p in paths:
        if p in _BASIC:
            out[p] = _BASIC[p]
            continue
        # Longest prefix first: "output_blocks.2.1.conv" (an upsampler) before "output_blocks.2.1".
        for prefix in sorted((q for q in rename if p == q or p.startswith(q + ".")), key=len, reverse=True):
            mapped = _sub(p, prefix, rename[prefix])
            if mapped is not None:
                out[p] = mapped
                break
    return out


def kohya_unet_names(module_paths) -> dict[str, str]:
    """LDM module path -> kohya module name (``lora_unet_`` + the diffusers path with '_' for '.'); paths
    outside the SD UNet layout keep their LDM spelling, as training does."""
    mapped = ldm_to_diffusers_unet(module_paths)
    return {p: kohya_name("lora_unet_", mapped.get(p, p)) for p in set(module_paths)}
