"""Peak memory of training: Kiln's Train against the host's own TrainLoraNode, same model, latents, captions,
rank, batch and steps, for fp32 / bf16 / fp8 base weights, checkpointing off and on, batch 1 and 4; printed
as ratios, in one run.

    .venv/bin/python bench/bench_memory.py [--size 64] [--steps 1] [--quick]

Memory is what each trainer allocates while it runs (core.train.memory: the allocator's own records on CPU,
max allocated on CUDA): activations, gradients, optimizer state, and any copy of the weights a trainer
makes. "total" adds the diffusion model's weights as loaded (fp8 one byte per weight). Kiln encodes its
latents and captions inside its call; the native node gets them made beforehand.
Goals: Kiln's peak at or below native's at equal settings; fp8 base about half of bf16 (total); checkpointing
cuts the training peak at least 3x at batch 4.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
MIB = 2 ** 20


def setup(size: int):
    sys.path.insert(0, str(REPO))
    import torch
    import cli
    cli.load_pack()
    from kiln.host import fixtures, runner
    work = Path(tempfile.mkdtemp(prefix="kiln-bench-memory-"))
    runner.boot_host(work)
    assets = fixtures.ensure_demo_assets(REPO / ".cache" / "test-assets")
    import nodes
    from kiln.core.data import DatasetConfig, load_dataset
    from kiln.host.quant_fixtures import write_quantized_unet_files
    data = fixtures.write_shapes_dataset(work / "data", size=size)
    dataset = load_dataset(DatasetConfig(path=str(data), resolution=size, min_bucket_reso=size, max_bucket_reso=size,
                                         bucket_reso_steps=min(64, size)))
    prefix = "model.diffusion_model."
    unet_sd = {k[len(prefix):]: v for k, v in fixtures.tiny_unet_state_dict(0).items()}
    files = write_quantized_unet_files(work / "diffusion_models", unet_sd, "kiln-tiny-sd15")
    with torch.inference_mode():
        _, clip, vae = nodes.CheckpointLoaderSimple().load_checkpoint(assets.checkpoint_name)[:3]
        refs = [r for b in dataset.epoch_plan(0, 1, 0) for r in b][: len(dataset)]
        latents = vae.encode(torch.stack([dataset.load_pixels(r) for r in refs]))
        positive = []
        for r in refs:
            positive += clip.encode_from_tokens_scheduled(clip.tokenize(dataset.caption(r, 0)))
    return {"sd15": str(work / "diffusion_models" / files.fp16)}, clip, vae, dataset, latents, positive


def measure(fn):
    from kiln.core.train.memory import measure_peak
    import torch
    device = "cuda" if torch.cuda.is_available() else "cpu"
    started = time.perf_counter()
    with measure_peak(device) as peak:
        fn()
    return peak.peak_bytes, time.perf_counter() - started


# base -> (weight storage, compute precision on CUDA); on CPU both trainers compute in fp32 (CPU bf16
# autocast is slower by two orders of magnitude), the weights stay stored as the base says.
BASES = {"fp32": ("float32", "fp32"), "bf16": ("bfloat16", "bf16"), "fp8": ("float8_e4m3fn", "bf16")}


def run_config(path, base, checkpointing, batch, args, clip, vae, dataset, latents, positive):
    import torch
    from kiln.core.net.spec import NetworkSpec
    from kiln.core.train.loop import TrainConfig
    from kiln.core.train.optim import OptimizerSpec
    from kiln.host.bake import SaveSpec, bake
    from kiln.host.native import diffusion_weight_bytes, load_diffusion_model, native_options, train_lora_native
    dtype_name, compute = BASES[base]
    dtype = getattr(torch, dtype_name)
    if not torch.cuda.is_available():
        compute = "fp32"
    row = {}
    model = load_diffusion_model(path, dtype)
    row["weights"] = diffusion_weight_bytes(model)
    row["kiln"], row["kiln_s"] = measure(lambda: bake(
        model, clip, vae, dataset, NetworkSpec(rank=args.rank, alpha=1.0, targets="attn_mlp"),
        OptimizerSpec(name="adamw", lr=1e-4, scheduler="constant", max_grad_norm=0),
        TrainConfig(max_steps=args.steps, batch_size=batch, seed=0, probe_samples=0, mixed_precision=compute,
                    gradient_checkpointing=checkpointing),
        SaveSpec(output_name="bench_memory", save_state=False)))
    del model
    bypass = base == "fp8"
    if bypass and "bypass_mode" not in native_options():
        row["native"] = None   # this host's node can't train on fp8 weights (no bypass mode)
        return row
    model = load_diffusion_model(path, dtype)
    with torch.inference_mode():
        row["native"], row["native_s"] = measure(lambda: train_lora_native(
            model, latents, positive, batch_size=batch, steps=args.steps, lr=1e-4, rank=args.rank,
            training_dtype=compute, gradient_checkpointing=checkpointing, bypass=bypass))
    return row


def main(argv=None):
    p = argparse.ArgumentParser()
    p.add_argument("--size", type=int, default=128, help="image size in pixels (latents are size/8)")
    p.add_argument("--steps", type=int, default=1)
    p.add_argument("--rank", type=int, default=8)
    p.add_argument("--quick", action="store_true", help="fp32 and fp8 at batch 4 only (a smoke run)")
    p.add_argument("--bases", nargs="+", choices=list(BASES), help="base weight dtypes (default: all)")
    args = p.parse_args(argv)
    paths, clip, vae, dataset, latents, positive = setup(args.size)
    bases = args.bases or (("fp32", "fp8") if args.quick else ("fp32", "bf16", "fp8"))
    batches = (4,) if args.quick else (1, 4)
    rows = {}
    for family, path in paths.items():
        for base in bases:
            for batch in batches:
                for ck in (False, True):
                    rows[family, base, ck, batch] = r = run_config(path, base, ck, batch, args, clip, vae, dataset,
                                                                   latents, positive)
                    native = f"{r['native'] / MIB:8.1f}" if r["native"] is not None else "     n/a"
                    ratio = f"{r['kiln'] / max(1, r['native']):.2f}" if r["native"] is not None else "n/a"
                    print(f"{family} {base:>4} ckpt {'on ' if ck else 'off'} batch {batch}: weights "
                          f"{r['weights'] / MIB:6.1f} MiB, training peak kiln {r['kiln'] / MIB:8.1f} MiB, native "
                          f"{native} MiB, kiln/native {ratio}", flush=True)
    print("\nratios")
    for (family, base, ck, batch), r in rows.items():
        if r["native"] is not None:
            print(f"  kiln/native {family} {base} ckpt {'on' if ck else 'off'} batch {batch}: "
                  f"{r['kiln'] / max(1, r['native']):.2f} (goal <= 1)")
    for family in paths:
        for batch in batches:
            for ck in (False, True):
                if (family, "bf16", ck, batch) in rows and (family, "fp8", ck, batch) in rows:
                    b, f = rows[family, "bf16", ck, batch], rows[family, "fp8", ck, batch]
                    print(f"  kiln fp8/bf16 total (weights + training peak) {family} ckpt {'on' if ck else 'off'} "
                          f"batch {batch}: {(f['weights'] + f['kiln']) / (b['weights'] + b['kiln']):.2f} (goal ~0.5)")
        for base in bases:
            for who in ("kiln", "native"):
                off, on = rows.get((family, base, False, 4)), rows.get((family, base, True, 4))
                if off and on and off[who] is not None and on[who]:
                    print(f"  {who} checkpointing off/on {family} {base} batch 4: {off[who] / on[who]:.2f}x (goal >= 3)")
    return rows


if __name__ == "__main__":
    main()
