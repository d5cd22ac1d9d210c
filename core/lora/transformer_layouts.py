"""diffusers / PEFT / ai-toolkit / SimpleTuner transformer LoRAs (``transformer.<diffusers path>.lora_A/B``,
also ``base_model.model.<path>``) in the host's module layout, for the families whose diffusers names differ
from ComfyUI's:

* Flux.1, Chroma and FLUX.2: attention q/k/v are one fused ``qkv`` Linear in the host, and a Flux.1 single
  block's q/k/v and MLP input are one ``linear1`` (FLUX.2's diffusers model fuses them itself:
  ``to_qkv_mlp_proj``); FLUX.2's feed-forwards are ``ff.linear_in/out`` and its modulations are global;
* SD3 / SD3.5: ``transformer_blocks`` are the host's ``joint_blocks`` (``x_block`` / ``context_block``),
  q/k/v fused per stream (and in SD3.5's ``attn2``);
* Wan: ``attn1``/``attn2``/``ffn.net`` are the host's ``self_attn``/``cross_attn``/``ffn``;
* Z-Image: attention q/k/v are one fused ``qkv``; the final layer and patch embedder carry a ``2-1`` suffix.

Split LoRAs on the parts of a fused layer become one LoRA on that layer: the downs stacked, the ups placed
block-diagonally, each part's alpha/rank folded into its up (the result's alpha is its rank), so its product
is exactly the parts' deltas side by side; parts the file lacks stay zero. diffusers orders a final
(pre-only) adaLN's output as (scale, shift) where the host has (shift, scale), so those ups swap halves,
as the host's own loader does (``swap_scale_shift``). Qwen-Image and HiDream need nothing here (the host's
names are the diffusers names). Paths a layout does not know are left to the caller (kohya spelling of the
diffusers path), and the fit check names them. The tables are checked against the host's own diffusers
maps (``comfy.utils.*_to_diffusers``) by tests/test_transformer_layouts.py.

Which layout a file is in is read from its keys and metadata (the reader has no model): single blocks or
FLUX.2's own names make it Flux; SD3's feed-forward/modulation/attn2/embedder names without single blocks
make it SD3; double-block attention alone (``transformer_blocks.N.attn.to_q``) is Qwen-Image's host naming
unless ``modelspec.architecture`` / ``ss_base_model_version`` say Flux, Chroma or SD3.
"""
from __future__ import annotations

import re
from typing import NamedTuple

import torch

from .names import LoraFormatError, kohya_name

_PART_SUFFIXES = {"lora_A.weight": "down", "lora_A.default.weight": "down", "lora_down.weight": "down",
                  "lora.down.weight": "down", "lora_B.weight": "up", "lora_B.default.weight": "up",
                  "lora_up.weight": "up", "lora.up.weight": "up", "alpha": "alpha"}

# Prefixes under which trainers save a diffusers transformer's modules: diffusers/ai-toolkit/SimpleTuner
# (``transformer.``) and PEFT's own state dicts (``base_model.model.``, as the host reads for SD3).
_PREFIXES = ("base_model.model.transformer.", "transformer.", "base_model.model.")


class Rule(NamedTuple):
    """One diffusers module (regex over its path) -> the host module it lands in."""
    pattern: str
    host: str                       # host module path, {0}, {1}... filled from the pattern's groups
    part: int | None = None         # index of this part in a fused host layer (None: the whole layer)
    widths: tuple | None = None     # the fused layer's parts' output widths, in units of one part
    swap: str = ""                  # "always" / "pre_only": swap the up's halves (scale, shift -> shift, scale)


def _qkv(stem: str, names: tuple, host: str) -> list[Rule]:
    return [Rule(rf"{stem}\.{n}", host, i, (1, 1, 1)) for i, n in enumerate(names)]


_DOUBLE = r"transformer_blocks\.(\d+)"
_SINGLE = r"single_transformer_blocks\.(\d+)"

_FLUX = [
    *_qkv(rf"{_DOUBLE}\.attn", ("to_q", "to_k", "to_v"), "double_blocks.{0}.img_attn.qkv"),
    *_qkv(rf"{_DOUBLE}\.attn", ("add_q_proj", "add_k_proj", "add_v_proj"), "double_blocks.{0}.txt_attn.qkv"),
    Rule(rf"{_DOUBLE}\.attn\.to_out\.0", "double_blocks.{0}.img_attn.proj"),
    Rule(rf"{_DOUBLE}\.attn\.to_add_out", "double_blocks.{0}.txt_attn.proj"),
    Rule(rf"{_DOUBLE}\.ff\.net\.0\.proj", "double_blocks.{0}.img_mlp.0"),
    Rule(rf"{_DOUBLE}\.ff\.net\.2", "double_blocks.{0}.img_mlp.2"),
    Rule(rf"{_DOUBLE}\.ff_context\.net\.0\.proj", "double_blocks.{0}.txt_mlp.0"),
    Rule(rf"{_DOUBLE}\.ff_context\.net\.2", "double_blocks.{0}.txt_mlp.2"),
    Rule(rf"{_DOUBLE}\.norm1\.linear", "double_blocks.{0}.img_mod.lin"),
    Rule(rf"{_DOUBLE}\.norm1_context\.linear", "double_blocks.{0}.txt_mod.lin"),
    # Flux.1's single-block linear1 is [q, k, v, MLP in] with the MLP 4x the hidden width (mlp_ratio 4).
    *[Rule(rf"{_SINGLE}\.attn\.{n}", "single_blocks.{0}.linear1", i, (1, 1, 1, 4))
      for i, n in enumerate(("to_q", "to_k", "to_v"))],
    Rule(rf"{_SINGLE}\.proj_mlp", "single_blocks.{0}.linear1", 3, (1, 1, 1, 4)),
    Rule(rf"{_SINGLE}\.proj_out", "single_blocks.{0}.linear2"),
    Rule(rf"{_SINGLE}\.norm\.linear", "single_blocks.{0}.modulation.lin"),
    Rule(r"x_embedder", "img_in"),
    Rule(r"context_embedder", "txt_in"),
    Rule(r"proj_out", "final_layer.linear"),
    Rule(r"norm_out\.linear", "final_layer.adaLN_modulation.1", swap="always"),
    Rule(r"time_text_embed\.timestep_embedder\.linear_1", "time_in.in_layer"),
    Rule(r"time_text_embed\.timestep_embedder\.linear_2", "time_in.out_layer"),
    Rule(r"time_text_embed\.text_embedder\.linear_1", "vector_in.in_layer"),
    Rule(r"time_text_embed\.text_embedder\.linear_2", "vector_in.out_layer"),
    Rule(r"time_text_embed\.guidance_embedder\.linear_1", "guidance_in.in_layer"),
    Rule(r"time_text_embed\.guidance_embedder\.linear_2", "guidance_in.out_layer"),
    # FLUX.2 (diffusers Flux2Transformer2DModel): SwiGLU feed-forwards, single blocks already fused,
    # global modulations, one time+guidance embedder.
    Rule(rf"{_DOUBLE}\.ff\.linear_in", "double_blocks.{0}.img_mlp.0"),
    Rule(rf"{_DOUBLE}\.ff\.linear_out", "double_blocks.{0}.img_mlp.2"),
    Rule(rf"{_DOUBLE}\.ff_context\.linear_in", "double_blocks.{0}.txt_mlp.0"),
    Rule(rf"{_DOUBLE}\.ff_context\.linear_out", "double_blocks.{0}.txt_mlp.2"),
    Rule(rf"{_SINGLE}\.attn\.to_qkv_mlp_proj", "single_blocks.{0}.linear1"),
    Rule(rf"{_SINGLE}\.attn\.to_out", "single_blocks.{0}.linear2"),
    # Not in the host's own diffusers map (its LoraLoader drops these keys): same layers, same row order
    # (shift, scale, gate per set), under FLUX.2's diffusers names.
    Rule(r"double_stream_modulation_img\.linear", "double_stream_modulation_img.lin"),
    Rule(r"double_stream_modulation_txt\.linear", "double_stream_modulation_txt.lin"),
    Rule(r"single_stream_modulation\.linear", "single_stream_modulation.lin"),
    Rule(r"time_guidance_embed\.timestep_embedder\.linear_1", "time_in.in_layer"),
    Rule(r"time_guidance_embed\.timestep_embedder\.linear_2", "time_in.out_layer"),
    Rule(r"time_guidance_embed\.guidance_embedder\.linear_1", "guidance_in.in_layer"),
    Rule(r"time_guidance_embed\.guidance_embedder\.linear_2", "guidance_in.out_layer"),
]
# FLUX.2 rules the host does not map (a LoRA on them is read by Kiln only).
FLUX2_KILN_ONLY = ("double_stream_modulation_img.linear", "double_stream_modulation_txt.linear",
                   "single_stream_modulation.linear", "time_guidance_embed.")

_SD3 = [
    *_qkv(rf"{_DOUBLE}\.attn", ("to_q", "to_k", "to_v"), "joint_blocks.{0}.x_block.attn.qkv"),
    *_qkv(rf"{_DOUBLE}\.attn", ("add_q_proj", "add_k_proj", "add_v_proj"), "joint_blocks.{0}.context_block.attn.qkv"),
    *_qkv(rf"{_DOUBLE}\.attn2", ("to_q", "to_k", "to_v"), "joint_blocks.{0}.x_block.attn2.qkv"),
    Rule(rf"{_DOUBLE}\.attn\.to_out\.0", "joint_blocks.{0}.x_block.attn.proj"),
    Rule(rf"{_DOUBLE}\.attn2\.to_out\.0", "joint_blocks.{0}.x_block.attn2.proj"),
    Rule(rf"{_DOUBLE}\.attn\.to_add_out", "joint_blocks.{0}.context_block.attn.proj"),
    Rule(rf"{_DOUBLE}\.ff\.net\.0\.proj", "joint_blocks.{0}.x_block.mlp.fc1"),
    Rule(rf"{_DOUBLE}\.ff\.net\.2", "joint_blocks.{0}.x_block.mlp.fc2"),
    Rule(rf"{_DOUBLE}\.ff_context\.net\.0\.proj", "joint_blocks.{0}.context_block.mlp.fc1"),
    Rule(rf"{_DOUBLE}\.ff_context\.net\.2", "joint_blocks.{0}.context_block.mlp.fc2"),
    Rule(rf"{_DOUBLE}\.norm1\.linear", "joint_blocks.{0}.x_block.adaLN_modulation.1"),
    # The last block's context half is pre-only: its adaLN gives (shift, scale) in the host, (scale,
    # shift) in diffusers; it is told apart by its width (2 x hidden rows, where the others have 6).
    Rule(rf"{_DOUBLE}\.norm1_context\.linear", "joint_blocks.{0}.context_block.adaLN_modulation.1",
         swap="pre_only"),
    Rule(r"pos_embed\.proj", "x_embedder.proj"),
    Rule(r"context_embedder", "context_embedder"),
    Rule(r"time_text_embed\.timestep_embedder\.linear_1", "t_embedder.mlp.0"),
    Rule(r"time_text_embed\.timestep_embedder\.linear_2", "t_embedder.mlp.2"),
    Rule(r"time_text_embed\.text_embedder\.linear_1", "y_embedder.mlp.0"),
    Rule(r"time_text_embed\.text_embedder\.linear_2", "y_embedder.mlp.2"),
    Rule(r"proj_out", "final_layer.linear"),
    Rule(r"norm_out\.linear", "final_layer.adaLN_modulation.1", swap="always"),
]

_WAN = [
    Rule(r"blocks\.(\d+)\.attn1\.to_q", "blocks.{0}.self_attn.q"),
    Rule(r"blocks\.(\d+)\.attn1\.to_k", "blocks.{0}.self_attn.k"),
    Rule(r"blocks\.(\d+)\.attn1\.to_v", "blocks.{0}.self_attn.v"),
    Rule(r"blocks\.(\d+)\.attn1\.to_out\.0", "blocks.{0}.self_attn.o"),
    Rule(r"blocks\.(\d+)\.attn2\.to_q", "blocks.{0}.cross_attn.q"),
    Rule(r"blocks\.(\d+)\.attn2\.to_k", "blocks.{0}.cross_attn.k"),
    Rule(r"blocks\.(\d+)\.attn2\.to_v", "blocks.{0}.cross_attn.v"),
    Rule(r"blocks\.(\d+)\.attn2\.to_out\.0", "blocks.{0}.cross_attn.o"),
    Rule(r"blocks\.(\d+)\.attn2\.add_k_proj", "blocks.{0}.cross_attn.k_img"),
    Rule(r"blocks\.(\d+)\.attn2\.add_v_proj", "blocks.{0}.cross_attn.v_img"),
    Rule(r"blocks\.(\d+)\.ffn\.net\.0\.proj", "blocks.{0}.ffn.0"),
    Rule(r"blocks\.(\d+)\.ffn\.net\.2", "blocks.{0}.ffn.2"),
    Rule(r"condition_embedder\.text_embedder\.linear_1", "text_embedding.0"),
    Rule(r"condition_embedder\.text_embedder\.linear_2", "text_embedding.2"),
    Rule(r"condition_embedder\.time_embedder\.linear_1", "time_embedding.0"),
    Rule(r"condition_embedder\.time_embedder\.linear_2", "time_embedding.2"),
    Rule(r"condition_embedder\.time_proj", "time_projection.1"),
    Rule(r"proj_out", "head.head"),
]

_STACKS = r"(layers|noise_refiner|context_refiner)\.(\d+)"
# Z-Image's other block layers (feed_forward.w1/w2/w3, adaLN_modulation.0) and embedders (cap_embedder,
# t_embedder) have the host's names and need no rule.
_Z_IMAGE = [
    *[Rule(rf"{_STACKS}\.attention\.{n}", "{0}.{1}.attention.qkv", i, (1, 1, 1))
      for i, n in enumerate(("to_q", "to_k", "to_v"))],
    Rule(rf"{_STACKS}\.attention\.to_out\.0", "{0}.{1}.attention.out"),
    Rule(r"all_final_layer\.2-1\.linear", "final_layer.linear"),
    Rule(r"all_final_layer\.2-1\.adaLN_modulation\.1", "final_layer.adaLN_modulation.1"),
    Rule(r"all_x_embedder\.2-1", "x_embedder"),
]

LAYOUTS = {"flux": _FLUX, "sd3": _SD3, "wan": _WAN, "z-image": _Z_IMAGE}
_COMPILED = {name: [(re.compile(r.pattern + "$"), r) for r in rules] for name, rules in LAYOUTS.items()}

_FLUX_ONLY = re.compile(r"^(single_transformer_blocks\.\d+\.|double_stream_modulation_|single_stream_modulation\.|"
                        r"time_guidance_embed\.|transformer_blocks\.\d+\.ff(_context)?\.linear_(in|out)$)")
_SD3_ONLY = re.compile(r"^(transformer_blocks\.\d+\.(ff(_context)?\.net\.|norm1(_context)?\.linear$|attn2\.)|"
                       r"pos_embed\.proj$)")
_WAN_KEYS = re.compile(r"^blocks\.\d+\.(attn1|attn2|ffn\.net)\.")
_Z_IMAGE_KEYS = re.compile(r"^((layers|noise_refiner|context_refiner)\.\d+\.attention\.to_(q|k|v|out)|"
                           r"all_final_layer\.2-1\.|all_x_embedder\.2-1$)")


def _split(key: str) -> tuple[str, str, str] | None:
    """``<prefix><path>.<part suffix>`` -> (prefix, path, 'down'|'up'|'alpha'); None for other keys.
    ``diffusion_model.`` counts only for Z-Image's diffusers-only names (the host reads those there too);
    every other ``diffusion_model.`` path is ComfyUI's own naming."""
    for suffix, part in _PART_SUFFIXES.items():
        if key.endswith("." + suffix):
            module = key[: -len(suffix) - 1]
            break
    else:
        return None
    if module.startswith("diffusion_model."):
        path = module[len("diffusion_model."):]
        return ("diffusion_model.", path, part) if _Z_IMAGE_KEYS.match(path) else None
    for prefix in _PREFIXES:
        if module.startswith(prefix):
            path = module[len(prefix):]
            # PEFT-wrapped UNets and text encoders are the generic reader's (kohya's diffusers names)
            if prefix == "base_model.model." and path.startswith(("unet.", "text_encoder")):
                return None
            return prefix, path, part
    return None


def _metadata_family(metadata: dict) -> str:
    text = " ".join(str(metadata.get(k, "")).lower() for k in ("modelspec.architecture", "ss_base_model_version"))
    if "flux" in text or "chroma" in text:
        return "flux"
    if "stable-diffusion-3" in text or "stable-diffusion-v3" in text or "sd3" in text:
        return "sd3"
    return ""


def layout_of(paths, metadata: dict) -> str | None:
    """Which family's diffusers layout the module paths are in (None: none that needs converting)."""
    paths = list(paths)
    if any(_WAN_KEYS.match(p) for p in paths):
        return "wan"
    if any(_Z_IMAGE_KEYS.match(p) for p in paths):
        return "z-image"
    if any(_FLUX_ONLY.match(p) for p in paths):
        return "flux"
    hinted = _metadata_family(metadata)
    if hinted and any(p.startswith("transformer_blocks.") for p in paths):
        return hinted
    if any(_SD3_ONLY.match(p) for p in paths):
        return "sd3"
    return None


def rule_for(layout: str, path: str) -> tuple[str, Rule] | None:
    """(host module path, rule) for a diffusers module path in ``layout``; None when no rule names it
    (then the host's name is the diffusers name, or the file does not fit the family)."""
    for rx, rule in _COMPILED[layout]:
        m = rx.match(path)
        if m:
            return rule.host.format(*m.groups()), rule
    return None


def _swap_halves(up: torch.Tensor) -> torch.Tensor:
    first, second = up.chunk(2, dim=0)
    return torch.cat([second, first], dim=0)


def _scaled_up(parts: dict, path: str, rule: Rule) -> tuple[torch.Tensor, torch.Tensor]:
    """(down, up * alpha/rank): the part's delta with its scale inside the up, rows in the host's order."""
    if "down" not in parts or "up" not in parts:
        raise LoraFormatError(f"transformer.{path}: a LoRA needs both lora_A (down) and lora_B (up); "
                              f"this file has only {sorted(parts)}.")
    down, up = parts["down"], parts["up"]
    rank = down.shape[0]
    scale = float(parts["alpha"]) / rank if "alpha" in parts else 1.0
    up = up.float() * scale
    # A pre-only adaLN gives 2 vectors of the block width (its input width); the others give 6 or 9.
    if rule.swap == "always" or (rule.swap == "pre_only" and up.shape[0] == 2 * down.shape[1]):
        up = _swap_halves(up)
    return down, up


def to_host_layout(tensors: dict, metadata: dict) -> tuple[dict, dict]:
    """(converted, rest): kohya-named LoRA tensors for the modules a family layout knows, and every other
    key for the generic readers (diffusers paths under ``transformer.``)."""
    groups: dict[str, dict] = {}
    prefixes: dict[str, str] = {}
    rest = {}
    for key, t in tensors.items():
        split = _split(key)
        if split is None:
            rest[key] = t
        else:
            prefix, path, part = split
            groups.setdefault(path, {})[part] = t
            prefixes[path] = prefix
    layout = layout_of(groups, metadata)
    out: dict[str, torch.Tensor] = {}
    fused: dict[str, dict] = {}
    for path, parts in groups.items():
        found = rule_for(layout, path) if layout else None
        if found is None:
            # not a layer this layout renames: the generic reader spells it kohya's way
            prefix = "diffusion_model." if prefixes[path] == "diffusion_model." else "transformer."
            for kind, suffix in (("down", "lora_A.weight"), ("up", "lora_B.weight"), ("alpha", "alpha")):
                if kind in parts:
                    rest[f"{prefix}{path}.{suffix}"] = parts[kind]
            continue
        target, rule = found
        down, up = _scaled_up(parts, path, rule)
        if rule.part is None:
            _add(out, kohya_name("lora_unet_", target), down, up, parts["up"].dtype)
        else:
            entry = fused.setdefault(target, {"widths": rule.widths, "parts": {}})
            entry["parts"][rule.part] = (down, up, parts["up"].dtype)
    for target, entry in fused.items():
        _fuse(target, entry["widths"], entry["parts"], out)
    return out, rest


def _fuse(target: str, widths: tuple, parts: dict, out: dict) -> None:
    """One LoRA on a fused host layer from LoRAs on some of its parts: downs stacked, ups block-diagonal."""
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
    _add(out, kohya_name("lora_unet_", target), torch.cat(downs, 0), up, next(iter(parts.values()))[2])


def _add(out: dict, name: str, down: torch.Tensor, up: torch.Tensor, dtype) -> None:
    """Store one LoRA (its scale inside ``up``; alpha = rank). Two diffusers names for one host layer
    (Flux.1's ``ff.net.0.proj`` and FLUX.2's ``ff.linear_in``, split and fused single-block projections)
    both apply, as in the host's loader: their factors are concatenated, so the deltas add exactly."""
    key_down, key_up = f"{name}.lora_down.weight", f"{name}.lora_up.weight"
    if key_down in out:
        if out[key_up].shape[0] != up.shape[0] or out[key_down].shape[1:] != down.shape[1:]:
            raise LoraFormatError(f"{name}: two diffusers modules of this file land in this layer with "
                                  f"different shapes ({tuple(out[key_up].shape)} vs {tuple(up.shape)}); "
                                  "the file does not fit one model.")
        down = torch.cat([out[key_down], down], 0)
        up = torch.cat([out[key_up].float(), up], 1)
    out[key_down] = down
    out[key_up] = up.to(dtype)
    out[f"{name}.alpha"] = torch.tensor(float(down.shape[0]))
