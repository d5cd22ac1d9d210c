"""The host's own LoRA trainer (comfy_extras/nodes_train.py TrainLoraNode), called the way each host
release defines it, for the training benchmark's baseline. The classic node (2025 host) returns the
patched MODEL; the V3 node (``io.ComfyNode``, list inputs) returns the LoRA, which its own
LoraModelLoader applies."""
from __future__ import annotations


def train_native_lora(model, latents: dict, positive: list, batch_size: int, steps: int, learning_rate: float,
                      rank: int, training_dtype: str, gradient_checkpointing: bool, seed: int = 0):
    """Train with the host's TrainLoraNode (AdamW, MSE, LoRA, fp32 LoRA weights); returns the MODEL with
    the trained LoRA applied at strength 1."""
    import comfy_extras.nodes_train as nt
    node = nt.TrainLoraNode
    if hasattr(node, "define_schema"):   # V3: every input arrives as a list (is_input_list)
        values = dict(model=model, latents=latents, positive=positive, batch_size=batch_size, steps=steps,
                      grad_accumulation_steps=1, learning_rate=learning_rate, rank=rank, optimizer="AdamW",
                      loss_function="MSE", seed=seed, training_dtype=training_dtype, lora_dtype="fp32",
                      quantized_backward=False, algorithm="LoRA", gradient_checkpointing=gradient_checkpointing,
                      checkpoint_depth=1, offloading=False, existing_lora="[None]", bucket_mode=False,
                      bypass_mode=False)
        import inspect
        wanted = inspect.signature(node.execute).parameters
        out = node.execute(**{k: [v] for k, v in values.items() if k in wanted})
        lora = out.args[0]
        return nt.LoraModelLoader.execute(model, lora, 1.0).args[0]
    out = node().train(model, latents, positive, batch_size, steps, 1, learning_rate, rank, "AdamW", "MSE", seed,
                       training_dtype, "fp32", "LoRA", gradient_checkpointing, "[None]")
    return out[0]
