"""The host's own TrainLoraNode, called the same way on every host release (benchmarks compare against it).

Two shapes exist: the classic node (``TrainLoraNode().train(...)``, 2025 releases) and the V3 node
(``TrainLoraNode.execute(...)`` with list inputs, checkpoint depth, offloading and bypass mode, 2026). The
shape is told by the method's signature, never by a version string.
"""
from __future__ import annotations

import inspect

import torch

import comfy.sd


def native_node():
    import comfy_extras.nodes_train as nodes_train
    return nodes_train.TrainLoraNode


def native_options() -> set[str]:
    """The native node's inputs on this host (e.g. 'bypass_mode', 'checkpoint_depth', 'offloading')."""
    node = native_node()
    fn = node.execute if hasattr(node, "execute") and not hasattr(node, "train") else node.train
    return set(inspect.signature(fn).parameters) - {"self", "cls"}


def train_lora_native(model, latents, positive: list, *, batch_size: int, steps: int, lr: float,
                      rank: int, training_dtype: str = "fp32", gradient_checkpointing: bool = False,
                      checkpoint_depth: int = 1, bypass: bool = False, offloading: bool = False, seed: int = 0):
    """Train with the host's node (AdamW, MSE, LoRA, fp32 LoRA weights) and return the MODEL with the trained
    LoRA applied at strength 1. ``latents``: a LATENT dict or its samples tensor; ``positive``: one conditioning
    per latent. The classic node returns that MODEL; the V3 node (every input a list) returns the LoRA, which
    its own LoraModelLoader applies."""
    node = native_node()
    latents = latents if isinstance(latents, dict) else {"samples": latents}
    if hasattr(node, "define_schema"):
        options = native_options()
        if (bypass and "bypass_mode" not in options) or (offloading and "offloading" not in options):
            raise NotImplementedError("this host's TrainLoraNode has no bypass mode or offloading")
        values = dict(model=model, latents=latents, positive=positive, batch_size=batch_size, steps=steps,
                      grad_accumulation_steps=1, learning_rate=lr, rank=rank, optimizer="AdamW",
                      loss_function="MSE", seed=seed, training_dtype=training_dtype, lora_dtype="fp32",
                      quantized_backward=False, algorithm="LoRA", gradient_checkpointing=gradient_checkpointing,
                      checkpoint_depth=checkpoint_depth, offloading=offloading, existing_lora="[None]",
                      bucket_mode=False, bypass_mode=bypass)
        out = node.execute(**{k: [v] for k, v in values.items() if k in options})
        lora = out.args[0] if hasattr(out, "args") else out[0]
        import comfy_extras.nodes_train as nodes_train
        applied = nodes_train.LoraModelLoader.execute(model, lora, 1.0)
        return applied.args[0] if hasattr(applied, "args") else applied[0]
    if bypass or offloading:
        raise NotImplementedError("this host's TrainLoraNode has no bypass mode or offloading")
    return node().train(model, latents, positive, batch_size, steps, 1, lr, rank, "AdamW", "MSE", seed,
                        training_dtype, "fp32", "LoRA", gradient_checkpointing, "[None]")[0]


def load_diffusion_model(path: str, weight_dtype: torch.dtype | None = None):
    """A diffusion-model file with its weights stored in ``weight_dtype`` (what UNETLoader's weight_dtype does,
    for any dtype: bf16 too, which UNETLoader doesn't list). Loaded outside inference mode: a memory
    benchmark then sees no tensor swap inside a trainer (the profiler cannot see the freed originals)."""
    options = {"dtype": weight_dtype} if weight_dtype is not None else {}
    return comfy.sd.load_diffusion_model(path, model_options=options)


def diffusion_weight_bytes(model_patcher) -> int:
    """Bytes the diffusion model's weights take as stored (fp8 one byte each, quantized tensors as stored)."""
    total = 0
    for t in list(model_patcher.model.diffusion_model.parameters()) + list(model_patcher.model.diffusion_model.buffers()):
        inner = getattr(t, "_qdata", None)
        total += inner.numel() * inner.element_size() if isinstance(inner, torch.Tensor) else t.numel() * t.element_size()
    return total
