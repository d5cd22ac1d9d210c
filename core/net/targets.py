"""Which layers a network trains, decided on the host's module names (LDM/CLIP naming).

Presets follow kohya: "attn_mlp" is every Linear/1x1 layer inside the transformer blocks (attention,
feed-forward, proj_in/out) and the text encoder's attention and MLP (CLIP, T5, and the Llama/Qwen/Gemma
encoders' gated MLP); "attn" only the attention
projections; "full" adds the ResNet, time-embedding and resampling layers (3x3 convs train only when
the spec gives them a conv rank). Norms, embeddings and biases never train.
"""
from __future__ import annotations

import re

import torch.nn as nn

from .families import UNET_FAMILIES, wanted_in_family

# Attention projections: the UNet's (to_q...), CLIP's (q_proj... out_proj), the LLM encoders' (Llama, Qwen, Gemma:
# q_proj... o_proj) and T5's (SelfAttention.q/k/v/o).
_ATTN = re.compile(r"\.attn\d?\.(to_q|to_k|to_v|to_out\.0)$|\.self_attn\.(q_proj|k_proj|v_proj|out_proj|o_proj)$|"
                   r"\.SelfAttention\.[qkvo]$")
# attn_mlp adds the feed-forwards: CLIP's fc1/fc2, the LLM encoders' gated MLP, T5's DenseReluDense.
_TRANSFORMER = re.compile(r"(transformer_blocks\.\d+\.|\.proj_in$|\.proj_out$|\.mlp\.fc\d$|\.self_attn\.|"
                          r"\.mlp\.(gate_proj|up_proj|down_proj)$|\.DenseReluDense\.(wi|wi_0|wi_1|wo)$)")
_FULL_EXTRA = re.compile(r"(in_layers\.\d+|out_layers\.\d+|emb_layers\.\d+|skip_connection|\.op$|\.conv$|"
                         r"time_embed\.\d+|label_emb\.\d+\.\d+|^diffusion_model\.out\.\d+|input_blocks\.0\.0)$")

PRESETS = ("attn", "attn_mlp", "full")


def is_linear(module: nn.Module) -> bool:
    """nn.Linear, or a host layer that acts as one without subclassing it (the 2026 host's
    mixed-precision Linear holding a quantized weight): trained in bypass like any Linear."""
    if isinstance(module, nn.Linear):
        return True
    weight = getattr(module, "weight", None)
    return (isinstance(getattr(module, "in_features", None), int) and isinstance(getattr(module, "out_features", None), int)
            and weight is not None and weight.dim() == 2)


def is_conv3x3(module: nn.Module) -> bool:
    return isinstance(module, nn.Conv2d) and tuple(module.kernel_size) != (1, 1)


def wanted(host_name: str, module: nn.Module, preset: str, family: str = "") -> bool:
    """``family`` (see core.net.families) picks the family's table for diffusion-model layers of the
    transformer families; SD-family UNets and text encoders ("" or sd1/sd2/sdxl) use the regexes here."""
    if preset not in PRESETS:
        raise ValueError(f"Unknown target preset {preset!r}; choose one of {PRESETS}")
    if family and family not in UNET_FAMILIES and host_name.startswith("diffusion_model."):
        return wanted_in_family(host_name[len("diffusion_model."):], is_linear(module), preset, family)
    if not (is_linear(module) or isinstance(module, nn.Conv2d)):
        return False
    if _ATTN.search(host_name):
        return True
    if preset == "attn":
        return False
    if _TRANSFORMER.search(host_name):
        return True
    return preset == "full" and bool(_FULL_EXTRA.search(host_name))


def wanted_weight(host_name: str, shape: tuple, preset: str, conv3x3: bool = True, family: str = "") -> bool:
    """``wanted`` for a bare weight tensor (e.g. from a checkpoint file): 2-D is a Linear, 4-D a Conv."""
    if len(shape) == 2:
        module: nn.Module = nn.Linear(1, 1)
    elif len(shape) == 4:
        module = nn.Conv2d(1, 1, tuple(shape[2:]))
        if tuple(shape[2:]) != (1, 1) and not conv3x3:
            return False
    else:
        return False
    return wanted(host_name, module, preset, family)
