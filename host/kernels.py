"""Differentiable stand-ins for the host's fused inference kernels while Kiln trains.

The 2026 host calls comfy_kitchen's fused RoPE kernels (``apply_rope``, ``apply_rope_split_half``,
``rms_rope_split_half`` ...) from some families' attention (ERNIE-Image, Cosmos Predict2 and Anima, JoyImage)
whatever its ``in_training`` flag says. Those are torch custom ops with no autograd formula, so a backward through
them fails. Inside ``differentiable_kernels()`` the kitchen module's callables that the host looks up at call time
(``comfy_kitchen.<name>``, ``comfy.quant_ops.ck.<name>``) are plain torch functions with the same results; the
host's own callables are put back when the context ends. Hosts without comfy_kitchen need nothing.
"""
from __future__ import annotations

import contextlib

import torch


def _rotate(pairs: torch.Tensor, freqs_cis: torch.Tensor) -> torch.Tensor:
    """``pairs`` [..., n, 1, 2] rotated by ``freqs_cis`` [..., n, 2, 2] (the host's rotation-matrix layout)."""
    return freqs_cis[..., 0] * pairs[..., 0] + freqs_cis[..., 1] * pairs[..., 1]


def apply_rope1(x: torch.Tensor, freqs_cis: torch.Tensor) -> torch.Tensor:
    """RoPE on interleaved pairs (x[2i], x[2i+1]); a longer ``freqs_cis`` is cut to the sequence, as the kernel does."""
    pairs = x.to(freqs_cis.dtype).reshape(*x.shape[:-1], -1, 1, 2)
    if pairs.shape[2] != 1 and freqs_cis.shape[2] != 1 and pairs.shape[2] != freqs_cis.shape[2]:
        freqs_cis = freqs_cis[:, :, :pairs.shape[2]]
    return _rotate(pairs, freqs_cis).reshape(x.shape).type_as(x)


def apply_rope_split_half1(x: torch.Tensor, freqs_cis: torch.Tensor) -> torch.Tensor:
    """RoPE on split-half pairs (x[i], x[i + d/2])."""
    pairs = x.reshape(*x.shape[:-1], 2, -1).movedim(-2, -1).unsqueeze(-2).to(freqs_cis.dtype)
    return _rotate(pairs, freqs_cis).movedim(-1, -2).reshape(x.shape).type_as(x)


def _rms(x: torch.Tensor, scale: torch.Tensor | None, epsilon: float) -> torch.Tensor:
    return torch.nn.functional.rms_norm(x, (x.shape[-1],), weight=scale, eps=epsilon)


def apply_rope(xq, xk, freqs_cis):
    return apply_rope1(xq, freqs_cis), apply_rope1(xk, freqs_cis)


def apply_rope_split_half(xq, xk, freqs_cis):
    return apply_rope_split_half1(xq, freqs_cis), apply_rope_split_half1(xk, freqs_cis)


def rms_rope1(x, freqs_cis, scale, epsilon=1e-6):
    return apply_rope1(_rms(x, scale, epsilon), freqs_cis)


def rms_rope(q, k, freqs_cis, q_scale, k_scale=None, epsilon=1e-6):
    k_scale = q_scale if k_scale is None else k_scale
    return rms_rope1(q, freqs_cis, q_scale, epsilon), rms_rope1(k, freqs_cis, k_scale, epsilon)


def rms_rope_split_half1(x, freqs_cis, scale, epsilon=1e-6):
    return apply_rope_split_half1(_rms(x, scale, epsilon), freqs_cis)


def rms_rope_split_half(q, k, freqs_cis, q_scale, k_scale=None, epsilon=1e-6):
    k_scale = q_scale if k_scale is None else k_scale
    return rms_rope_split_half1(q, freqs_cis, q_scale, epsilon), rms_rope_split_half1(k, freqs_cis, k_scale, epsilon)


# kernel name -> its differentiable stand-in (same arguments, same results).
STAND_INS = {f.__name__: f for f in (apply_rope, apply_rope1, apply_rope_split_half, apply_rope_split_half1,
                                     rms_rope, rms_rope1, rms_rope_split_half, rms_rope_split_half1)}


def _kitchen_modules() -> list:
    """The module objects the host calls the kernels through (comfy_kitchen itself, and the host's ``ck`` alias
    where it is another object); empty where the host has no comfy_kitchen."""
    modules = []
    try:
        import comfy_kitchen
        modules.append(comfy_kitchen)
    except ImportError:
        return []
    try:
        import comfy.quant_ops as quant_ops
        ck = getattr(quant_ops, "ck", None)
        if ck is not None and all(ck is not m for m in modules):
            modules.append(ck)
    except ImportError:
        pass
    return modules


@contextlib.contextmanager
def differentiable_kernels(enabled: bool = True):
    """Within the context the fused kernels of STAND_INS resolve to their torch stand-ins; restored after."""
    if not enabled:
        yield
        return
    saved = []
    for module in _kitchen_modules():
        for name, stand_in in STAND_INS.items():
            if hasattr(module, name):
                saved.append((module, name, getattr(module, name)))
                setattr(module, name, stand_in)
    try:
        yield
    finally:
        for module, name, real in reversed(saved):
            setattr(module, name, real)
