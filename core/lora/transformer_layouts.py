"""diffusers / ai-toolkit / SimpleTuner transformer LoRAs (``transformer.<diffusers path>.lora_A/B``) in the
host's module layout, for the families whose diffusers names differ from ComfyUI's:

* Flux.1 and Chroma: attention q/k/v are one fused ``qkv`` Linear in the host, and a single block's q/k/v
  and MLP input are one ``linear1``;
* Wan: ``attn1``/``attn2``/``ffn.net`` are the host's ``self_attn``/``cross_attn``/``ffn``;
* Z-Image: attention q/k/v are one fused ``qkv``.

Split LoRAs on the parts of a fused layer become one LoRA on that layer: the downs stacked, the ups placed
block-diagonally, each part's alpha/rank folded into its up (the result's alpha is its rank), so its product
is exactly the parts' deltas side by side; parts the file lacks stay zero. Qwen-Image and HiDream need
nothing here (the host's names are the diffusers names). Paths a layout does not know are left to the
caller (kohya spelling of the diffusers path), and the fit check names them.

Double-block keys (``transformer_blocks.N.attn.to_q``, ``ff_context``, ``norm1_context``) read the same for
Flux, SD3 and (attention) Qwen-Image; a file is read as Flux only when it has single blocks or Flux/Chroma
metadata, so an SD3 or Qwen-Image file is never rewritten into Flux's layout.
"""
from __future__ import annotations

import re

import torch

from .formats import LoraFormatError, kohya_name

_PART_SUFFIXES = {"lora_A.weight": "down", "lora_A.default.weight": "down", "lora_down.weight": "down",
                  "lora.down.weight": "down", "lora_B.weight": "up", "lora_B.default.weight": "up",
                  "lora_up.weight": "up", "lora.up.weight": "up", "alpha": "alpha"}

# (diffusers path regex, host path template, fused part index, parts' widths in units of the part width)
_FLUX = [
    (r"transformer_blocks\.(\d+)\.attn\.to_q", "double_blocks.{0}.img_attn.qkv", 0, (1, 1, 1)),
    (r"transformer_blocks\.(\d+)\.attn\.to_k", "double_blocks.{0}.img_attn.qkv", 1, (1, 1, 1)),
    (r"transformer_blocks\.(\d+)\.attn\.to_v", "double_blocks.{0}.img_attn.qkv", 2, (1, 1, 1)),
    (r"transformer_blocks\.(\d+)\.attn\.add_q_proj", "double_blocks.{0}.txt_attn.qkv", 0, (1, 1, 1)),
    (r"transformer_blocks\.(\d+)\.attn\.add_k_proj", "double_blocks.{0}.txt_attn.qkv", 1, (1, 1, 1)),
    (r"transformer_blocks\.(\d+)\.attn\.add_v_proj", "double_blocks.{0}.txt_attn.qkv", 2, (1, 1, 1)),
    (r"transformer_blocks\.(\d+)\.attn\.to_out\.0", "double_blocks.{0}.img_attn.proj", None, None),
    (r"transformer_blocks\.(\d+)\.attn\.to_add_out", "double_blocks.{0}.txt_attn.proj", None, None),
    (r"transformer_blocks\.(\d+)\.ff\.net\.0\.proj", "double_blocks.{0}.img_mlp.0", None, None),
    (r"transformer_blocks\.(\d+)\.ff\.net\.2", "double_blocks.{0}.img_mlp.2", None, None),
    (r"transformer_blocks\.(\d+)\.ff_context\.net\.0\.proj", "double_blocks.{0}.txt_mlp.0", None, None),
    (r"transformer_blocks\.(\d+)\.ff_context\.net\.2", "double_blocks.{0}.txt_mlp.2", None, None),
    (r"transformer_blocks\.(\d+)\.norm1\.linear", "double_blocks.{0}.img_mod.lin", None, None),
    (r"transformer_blocks\.(\d+)\.norm1_context\.linear", "double_blocks.{0}.txt_mod.lin", None, None),
    # Flux.1's single-block linear1 is [q, k, v, MLP in] with the MLP 4x the hidden width (mlp_ratio 4).
    (r"single_transformer_blocks\.(\d+)\.attn\.to_q", "single_blocks.{0}.linear1", 0, (1, 1, 1, 4)),
    (r"single_transformer_blocks\.(\d+)\.attn\.to_k", "single_blocks.{0}.linear1", 1, (1, 1, 1, 4)),
    (r"single_transformer_blocks\.(\d+)\.attn\.to_v", "single_blocks.{0}.linear1", 2, (1, 1, 1, 4)),
    (r"single_transformer_blocks\.(\d+)\.proj_mlp", "single_blocks.{0}.linear1", 3, (1, 1, 1, 4)),
    (r"single_transformer_blocks\.(\d+)\.proj_out", "single_blocks.{0}.linear2", None, None),
    (r"single_transformer_blocks\.(\d+)\.norm\.linear", "single_blocks.{0}.modulation.lin", None, None),
    (r"x_embedder", "img_in", None, None),
    (r"context_embedder", "txt_in", None, None),
    (r"proj_out", "final_layer.linear", None, None),
    (r"time_text_embed\.timestep_embedder\.linear_1", "time_in.in_layer", None, None),
    (r"time_text_embed\.timestep_embedder\.linear_2", "time_in.out_layer", None, None),
    (r"time_text_embed\.text_embedder\.linear_1", "vector_in.in_layer", None, None),
    (r"time_text_embed\.text_embedder\.linear_2", "vector_in.out_layer", None, None),
    (r"time_text_embed\.guidance_embedder\.linear_1", "guidance_in.in_layer", None, None),
    (r"time_text_embed\.guidance_embedder\.linear_2", "guidance_in.out_layer", None, None),
]

_WAN = [
    (r"blocks\.(\d+)\.attn1\.to_q", "blocks.{0}.self_attn.q", None, None),
    (r"blocks\.(\d+)\.attn1\.to_k", "blocks.{0}.self_attn.k", None, None),
    (r"blocks\.(\d+)\.attn1\.to_v", "blocks.{0}.self_attn.v", None, None),
    (r"blocks\.(\d+)\.attn1\.to_out\.0", "blocks.{0}.self_attn.o", None, None),
    (r"blocks\.(\d+)\.attn2\.to_q", "blocks.{0}.cross_attn.q", None, None),
    (r"blocks\.(\d+)\.attn2\.to_k", "blocks.{0}.cross_attn.k", None, None),
    (r"blocks\.(\d+)\.attn2\.to_v", "blocks.{0}.cross_attn.v", None, None),
    (r"blocks\.(\d+)\.attn2\.to_out\.0", "blocks.{0}.cross_attn.o", None, None),
    (r"blocks\.(\d+)\.attn2\.add_k_proj", "blocks.{0}.cross_attn.k_img", None, None),
    (r"blocks\.(\d+)\.attn2\.add_v_proj", "blocks.{0}.cross_attn.v_img", None, None),
    (r"blocks\.(\d+)\.ffn\.net\.0\.proj", "blocks.{0}.ffn.0", None, None),
    (r"blocks\.(\d+)\.ffn\.net\.2", "blocks.{0}.ffn.2", None, None),
    (r"condition_embedder\.text_embedder\.linear_1", "text_embedding.0", None, None),
    (r"condition_embedder\.text_embedder\.linear_2", "text_embedding.2", None, None),
    (r"condition_embedder\.time_embedder\.linear_1", "time_embedding.0", None, None),
    (r"condition_embedder\.time_embedder\.linear_2", "time_embedding.2", None, None),
    (r"condition_embedder\.time_proj", "time_projection.1", None, None),
    (r"proj_out", "head.head", None, None),
]

_Z_IMAGE = [
    (r"(layers|noise_refiner|context_refiner)\.(\d+)\.attention\.to_q", "{0}.{1}.attention.qkv", 0, (1, 1, 1)),
    (r"(layers|noise_refiner|context_refiner)\.(\d+)\.attention\.to_k", "{0}.{1}.attention.qkv", 1, (1, 1, 1)),
    (r"(layers|noise_refiner|context_refiner)\.(\d+)\.attention\.to_v", "{0}.{1}.attention.qkv", 2, (1, 1, 1)),
    (r"(layers|noise_refiner|context_refiner)\.(\d+)\.attention\.to_out\.0", "{0}.{1}.attention.out", None, None),
]

LAYOUTS = {"flux": _FLUX, "wan": _WAN, "z-image": _Z_IMAGE}

_FLUX_ONLY = re.compile(r"^single_transformer_blocks\.\d+\.")
_WAN_KEYS = re.compile(r"^blocks\.\d+\.(attn1|attn2|ffn\.net)\.")
_Z_IMAGE_KEYS = re.compile(r"^(layers|noise_refiner|context_refiner)\.\d+\.attention\.to_(q|k|v|out)")


def _split(key: str) -> tuple[str, str] | None:
    """``transformer.<path>.<part suffix>`` -> (path, 'down'|'up'|'alpha'); None for other keys."""
    if not key.startswith("transformer."):
        return None
    rest = key[len("transformer."):]
    for suffix, part in _PART_SUFFIXES.items():
        if rest.endswith("." + suffix):
            return rest[: -len(suffix) - 1], part
    return None


def layout_of(paths, metadata: dict) -> str | None:
    """Which family's diffusers layout the module paths are in (None: none that needs converting)."""
    paths = list(paths)
    if any(_WAN_KEYS.match(p) for p in paths):
        return "wan"
    if any(_Z_IMAGE_KEYS.match(p) for p in paths):
        return "z-image"
    flux_meta = any("flux" in str(metadata.get(k, "")).lower() or "chroma" in str(metadata.get(k, "")).lower()
                    for k in ("modelspec.architecture", "ss_base_model_version"))
    if any(_FLUX_ONLY.match(p) for p in paths) or (flux_meta and any(p.startswith("transformer_blocks.")
                                                                      for p in paths)):
        return "flux"
    return None


def _scaled_up(parts: dict, path: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(down, up * alpha/rank): the part's delta with its scale inside the up."""
    if "down" not in parts or "up" not in parts:
        raise LoraFormatError(f"transformer.{path}: a LoRA needs both lora_A (down) and lora_B (up); "
                              f"this file has only {sorted(parts)}.")
    down, up = parts["down"], parts["up"]
    rank = down.shape[0]
    scale = float(parts["alpha"]) / rank if "alpha" in parts else 1.0
    return down, up.float() * scale


def to_host_layout(tensors: dict, metadata: dict) -> tuple[dict, dict]:
    """(converted, rest): kohya-named LoRA tensors for the modules a family layout knows, and every other
    key unchanged for the generic readers."""
    groups: dict[str, dict] = {}
    rest = {}
    for key, t in tensors.items():
        split = _split(key)
        if split is None:
            rest[key] = t
        else:
            groups.setdefault(split[0], {})[split[1]] = t
    layout = layout_of(groups, metadata)
    if layout is None:
        return {}, dict(tensors)
    rules = [(re.compile(rx + "$"), host, part, widths) for rx, host, part, widths in LAYOUTS[layout]]
    out: dict[str, torch.Tensor] = {}
    fused: dict[str, dict] = {}
    for path, parts in groups.items():
        for rx, host, part, widths in rules:
            m = rx.match(path)
            if m:
                break
        else:   # not a layer this layout renames: the generic reader spells it kohya's way
            for kind, suffix in (("down", "lora_A.weight"), ("up", "lora_B.weight"), ("alpha", "alpha")):
                if kind in parts:
                    rest[f"transformer.{path}.{suffix}"] = parts[kind]
            continue
        target = host.format(*m.groups())
        down, up = _scaled_up(parts, path)
        if part is None:
            name = kohya_name("lora_unet_", target)
            out[f"{name}.lora_down.weight"] = down
            out[f"{name}.lora_up.weight"] = up.to(parts["up"].dtype)
            out[f"{name}.alpha"] = torch.tensor(float(down.shape[0]))
        else:
            fused.setdefault(target, {"widths": widths, "parts": {}})["parts"][part] = (down, up, parts["up"].dtype)
    for target, entry in fused.items():
        widths, parts = entry["widths"], entry["parts"]
        # the width of one unit: any present part's output rows over its share
        unit = next(up.shape[0] // widths[i] for i, (_, up, _) in parts.items())
        downs = [parts[i][0] for i in sorted(parts)]
        rank = sum(d.shape[0] for d in downs)
        up = torch.zeros(unit * sum(widths), rank)
        row, col = 0, 0
        for i, w in enumerate(widths):
            if i in parts:
                _, part_up, _ = parts[i]
                if part_up.shape[0] != unit * w:
                    raise LoraFormatError(f"{target}: part {i} has {part_up.shape[0]} output rows, expected "
                                          f"{unit * w} from the other parts; the file does not fit one model.")
                up[row:row + unit * w, col:col + part_up.shape[1]] = part_up
                col += part_up.shape[1]
            row += unit * w
        name = kohya_name("lora_unet_", target)
        dtype = next(iter(parts.values()))[2]
        out[f"{name}.lora_down.weight"] = torch.cat(downs, 0)
        out[f"{name}.lora_up.weight"] = up.to(dtype)
        out[f"{name}.alpha"] = torch.tensor(float(rank))
    return out, rest
