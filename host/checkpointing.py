"""Memory-saving training on the host's models: per-block gradient checkpointing at a chosen depth.

The diffusion model's blocks are found by the host's own attribute names (``input_blocks``/``middle_block``/
``output_blocks`` for the SD-family UNets, ``double_blocks``/``single_blocks`` for Flux/Chroma/FLUX.2,
``joint_blocks`` for SD3, ``transformer_blocks`` for Qwen-Image, ``blocks`` for Wan, ``layers`` and the
refiners for Z-Image/Lumina), with any other ModuleList of the diffusion model as the fallback, so a new
family trains with checkpointing without a table entry.
"""
from __future__ import annotations

import contextlib
import itertools
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.utils.checkpoint

BLOCK_LISTS = ("input_blocks", "middle_block", "output_blocks", "double_blocks", "single_blocks", "joint_blocks",
               "transformer_blocks", "blocks", "noise_refiner", "context_refiner", "layers")
# No forward of their own that the host calls: the SD UNet runs a TimestepEmbedSequential's layers one by
# one (forward_timestep_embed), so its parts, not the Sequential, are what can be checkpointed.
_CONTAINERS = (nn.ModuleList, nn.ModuleDict, nn.Sequential)


def diffusion_blocks(diffusion_model: nn.Module) -> list[nn.Module]:
    """The diffusion model's top-level blocks, in forward order where the host names them."""
    blocks: list[nn.Module] = []
    seen: set[int] = set()

    def add(m):
        if id(m) not in seen:
            seen.add(id(m))
            blocks.append(m)
    for attr in BLOCK_LISTS:
        found = getattr(diffusion_model, attr, None)
        if isinstance(found, nn.ModuleList):
            for m in found:
                add(m)
        elif isinstance(found, nn.Module):
            add(found)
    if not blocks:
        for child in diffusion_model.children():
            if isinstance(child, nn.ModuleList):
                for m in child:
                    add(m)
    return blocks


def checkpoint_units(diffusion_model: nn.Module, depth: int = 1, called=None) -> list[nn.Module]:
    """Modules whose activations are recomputed in backward. Depth 1: each block (for the SD UNet each
    ResBlock, SpatialTransformer and resampler of a level). Depth 2: each part of those (a transformer's
    blocks, an attention or MLP of a DiT block), and so on; lists, dicts and Sequentials don't count as a
    level (their forward is not what the host calls), like the host's ``checkpoint_depth``. Finer units keep fewer
    activations alive during recomputation but more at the unit boundaries.

    ``called``: the modules whose forward a traced step ran (host.preflight.called_modules). A part whose
    forward its block never calls (MMDiT's context and x halves, which the joint block drives through their
    own methods) would be wrapped for nothing; with ``called`` such a block stays one unit."""
    if depth < 1:
        raise ValueError(f"checkpoint depth must be 1 or more (1 = whole blocks), not {depth}")
    units: list[nn.Module] = []

    def descend(m: nn.Module, level: int):
        parts = [g for c in m.children() for g in (c.children() if isinstance(c, _CONTAINERS) else (c,))]
        if called is not None:
            parts = [p for p in parts if p in called]
        if level == depth or not parts:
            units.append(m)
            return
        for part in parts:
            descend(part, level + 1)
    for block in diffusion_blocks(diffusion_model):
        for part in (block.children() if isinstance(block, _CONTAINERS) else (block,)):
            descend(part, 1)
    # Parameter-free leaves (activations, dropout) gain nothing from a checkpoint of their own.
    return [u for u in units if any(True for _ in u.parameters())]


@dataclass
class CheckpointStats:
    units: int = 0          # modules wrapped
    forwards: int = 0       # wrapped forwards that kept only their inputs (grad enabled)
    recomputed: int = 0     # forwards run again in backward: checkpointing did its work


def _copy_if_activation(value):
    return value.clone() if isinstance(value, torch.Tensor) and value.is_floating_point() and value.dim() >= 3 else value


@contextlib.contextmanager
def _recompute_contexts(unit: nn.Module):
    from .training import host_training_flag, residuals_grad_safe
    with host_training_flag(True), residuals_grad_safe(unit, True):
        yield


@contextlib.contextmanager
def gradient_checkpointing(model_patcher, enabled: bool, depth: int = 1, called=None):
    """Recompute each checkpoint unit's activations in backward instead of keeping them; yields the stats.
    ``called``: see checkpoint_units."""
    stats = CheckpointStats()
    if not enabled:
        yield stats
        return
    units = checkpoint_units(model_patcher.model.diffusion_model, depth, called)
    stats.units = len(units)
    for unit in units:
        original = unit.forward

        def wrapped(*args, _fwd=original, _unit=unit, **kwargs):
            if not torch.is_grad_enabled():
                return _fwd(*args, **kwargs)
            stats.forwards += 1
            calls = itertools.count()

            def run(*a, **k):
                first = next(calls) == 0
                # Blocks that add residuals in place onto their input (Flux's single blocks:
                # ``x += gate * out``) would change the input the checkpoint keeps for the recomputation;
                # the block gets a copy, the checkpoint keeps the original.
                a = tuple(_copy_if_activation(v) for v in a)
                k = {key: _copy_if_activation(v) for key, v in k.items()}
                if first:
                    return _fwd(*a, **k)
                stats.recomputed += 1
                # Backward runs outside the forward's training contexts; the recomputation must take the
                # same path (differentiable kernels, norm-input copies) or autograd finds other tensors.
                with _recompute_contexts(_unit):
                    return _fwd(*a, **k)
            return torch.utils.checkpoint.checkpoint(run, *args, use_reentrant=False, **kwargs)
        unit.forward = wrapped
    try:
        yield stats
    finally:
        for unit in units:
            unit.__dict__.pop("forward", None)



_LOW_PRECISION = {torch.float8_e4m3fn, torch.float8_e5m2, torch.bfloat16, torch.float16}


def _first_row(x: torch.Tensor) -> torch.Tensor:
    """Up to 16 values along the last axis at index 0 of the others: a view, whatever the strides."""
    return x[(0,) * (x.dim() - 1)][:16]


@dataclass
class RefetchStats:
    dropped: int = 0        # weight copies autograd would have kept, replaced by a note
    refetched: int = 0      # weights cast / fetched to the device again in backward


def recast_layers(model_patcher) -> list[nn.Module]:
    """Layers whose weight is stored in low precision and cast per forward as a plain cast (no scales)."""
    layers = []
    for module in model_patcher.model.diffusion_model.modules():
        weight = getattr(module, "weight", None)
        if (isinstance(weight, torch.Tensor) and type(weight).__name__ != "QuantizedTensor"
                and weight.dtype in _LOW_PRECISION and weight.dim() >= 2 and not any(True for _ in module.children())
                and not hasattr(module, "scale_weight") and not hasattr(module, "weight_scale")):
            layers.append(module)
    return layers


@contextlib.contextmanager
def recast_weights_in_backward(model_patcher, enabled: bool = True, layers=None, stats: "RefetchStats | None" = None):
    """Layers whose weights are stored in low precision and cast per forward (the host's manual cast, e.g.
    UNETLoader's fp8 weight dtypes) hand the cast copy to F.linear/conv, and autograd keeps it for the
    input's gradient: a full-precision copy of every weight, for the whole step, which undoes fp8's saving.
    While such a layer runs, a saved tensor that is exactly its cast weight is replaced by a note, and the
    backward casts the stored weight again. Layers with scales (scaled fp8, quantized tensors) are left to
    the host: their saved tensor is not a plain cast. Off under gradient checkpointing, which already
    drops these copies (and whose own saved-tensor hooks must not be shadowed).

    ``layers``: other layers to treat so, e.g. the ones the host streams from the CPU (host.placement):
    their weight is fetched to the device again in backward instead of staying there for the whole step.
    ``stats`` counts the notes taken and the weights fetched again."""
    if not enabled:
        yield 0
        return
    layers = recast_layers(model_patcher) if layers is None else list(layers)
    handles = []
    active: list = []

    def pre(module, args):
        if not torch.is_grad_enabled():
            return
        weight = module.weight

        def pack(t):
            if not t.dtype.is_floating_point:
                return t
            # A Linear on 3-D input runs as a matmul that keeps the weight transposed (a view of the copy).
            if t.shape == weight.shape:
                transposed = False
            elif t.dim() == 2 and weight.dim() == 2 and t.shape == weight.shape[::-1]:
                transposed = True
            else:
                return t
            if not (t.dtype != weight.dtype or t.device != weight.device or t.data_ptr() == weight.data_ptr()):
                return t
            if torch.equal(_first_row(t.t() if transposed else t), _first_row(weight).to(t.device, t.dtype)):
                if stats is not None:
                    stats.dropped += 1
                return ("kiln_recast", module, t.dtype, t.device, transposed)
            return t

        def unpack(saved):
            if isinstance(saved, tuple) and saved and saved[0] == "kiln_recast":
                _, m, dtype, device, transposed = saved
                if stats is not None:
                    stats.refetched += 1
                fetched = m.weight.to(device=device, dtype=dtype)
                return fetched.t() if transposed else fetched
            return saved
        ctx = torch.autograd.graph.saved_tensors_hooks(pack, unpack)
        ctx.__enter__()
        active.append(ctx)

    def post(module, args, output):
        if active:
            active.pop().__exit__(None, None, None)
    for module in layers:
        handles.append(module.register_forward_pre_hook(pre))
        handles.append(module.register_forward_hook(post))
    try:
        yield len(layers)
    finally:
        for h in handles:
            h.remove()
