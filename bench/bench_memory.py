"""Peak memory of training: Kiln's Train against the host's own TrainLoraNode, same model, latents, captions,
rank, batch and steps, for two families (the tiny SD1.5 UNet at 128 px, a wider SD3 MMDiT at 256 px, both
built with the host's classes), fp32 / bf16 / fp8 base weights, checkpointing off and on, batch 1 and 4;
with Kiln's pre-flight estimate of its training memory beside the measured peak; printed as ratios, in one run.

    .venv/bin/python bench/bench_memory.py [--families sd15 sd3] [--bases fp32 bf16 fp8] [--batches 1 4]
                                           [--checkpoint-depth 1] [--sd3-depth 4] [--steps 1] [--quick]

Memory is what each trainer allocates while it runs (core.train.memory: the allocator's own records on CPU,
max allocated on CUDA): activations, gradients, optimizer state, and any copy of the weights a trainer
makes. "total" adds the diffusion model's weights as loaded (fp8 one byte per weight). Kiln encodes its
captions inside its call and reads its latents from its disk cache (written by a warm-up run first); the
native node gets latents and captions made beforehand. The estimate is what
Kiln's pre-flight (host.preflight, core.train.estimate) predicts for the same run before loading the model.
Goals: Kiln's peak at or below native's at equal settings; fp8 base about half of bf16 (total); checkpointing
cuts the training peak at least 3x at batch 4; the estimate within 25% of the measured peak.
"""
from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "bench"))

import harness  # noqa: E402

MIB = 2 ** 20
SD3_DEPTH = 4      # hidden width 64 x depth (the host's SD3 detection reads it so): 256 wide, 4 joint blocks


@dataclass
class FamilyRun:
    path: str           # diffusion-model file (fp32 weights; loaded at each base's dtype)
    clip: object
    vae: object
    dataset: object
    latents: object     # made beforehand for the native node
    positive: list


def _dataset(root: Path, size: int):
    from kiln.core.data import DatasetConfig, load_dataset
    from kiln.devtools import fixtures
    data = fixtures.write_shapes_dataset(root, size=size)
    return load_dataset(DatasetConfig(path=str(data), resolution=size, min_bucket_reso=size, max_bucket_reso=size,
                                      bucket_reso_steps=64))


def _native_inputs(dataset, clip, vae):
    import torch
    with torch.inference_mode():
        refs = [r for b in dataset.epoch_plan(0, 1, 0) for r in b][: len(dataset)]
        latents = vae.encode(torch.stack([dataset.load_pixels(r) for r in refs]))
        positive = []
        for r in refs:
            positive += clip.encode_from_tokens_scheduled(clip.tokenize(dataset.caption(r, 0)))
    return latents, positive


def setup_sd15(work: Path) -> FamilyRun:
    import torch
    import nodes
    from kiln.devtools import fixtures
    from kiln.devtools.quant_fixtures import write_quantized_unet_files
    assets = fixtures.ensure_demo_assets(REPO / ".cache" / "test-assets")
    dataset = _dataset(work / "data128", 128)
    prefix = "model.diffusion_model."
    unet_sd = {k[len(prefix):]: v for k, v in fixtures.tiny_unet_state_dict(0).items()}
    files = write_quantized_unet_files(work / "diffusion_models", unet_sd, "kiln-tiny-sd15")
    with torch.inference_mode():
        _, clip, vae = nodes.CheckpointLoaderSimple().load_checkpoint(assets.checkpoint_name)[:3]
    return FamilyRun(str(work / "diffusion_models" / files.fp16), clip, vae, dataset, *_native_inputs(dataset, clip, vae))


def setup_sd3(work: Path, depth: int = SD3_DEPTH) -> FamilyRun:
    """SD3's MMDiT from the host's class with ``depth`` joint blocks, 64 x depth wide (the fixture's widths
    otherwise), so weights and activations both matter; the family's tiny text encoder and 16-channel VAE."""
    import torch
    import comfy.ops
    import nodes
    from safetensors.torch import save_file
    from kiln.devtools import family_fixtures as ff
    fam = ff.ensure_family_assets("sd3", REPO / ".cache" / "test-assets")
    kwargs = ff.host_kwargs("sd3")
    kwargs.update(depth=depth, context_embedder_config={
        "target": "torch.nn.Linear", "params": {"in_features": 64, "out_features": 64 * depth}})
    cls = ff._import(ff.FAMILIES["sd3"].model_class)
    torch.manual_seed(0)
    model = cls(**kwargs, dtype=torch.float32, device="cpu", operations=comfy.ops.disable_weight_init)
    ff._init_tiny(model, 0)
    with torch.no_grad():
        model.get_submodule(ff.FAMILIES["sd3"].out_layer).weight.mul_(0.1)
    path = work / "diffusion_models" / f"kiln-wide-sd3-d{depth}.safetensors"
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    clip = ff.tiny_text_encoder("sd3")
    with torch.inference_mode():
        vae = nodes.VAELoader().load_vae(fam.vae_name)[0]
    dataset = _dataset(work / "data256", 256)
    return FamilyRun(str(path), clip, vae, dataset, *_native_inputs(dataset, clip, vae))


FAMILY_SETUPS = {"sd15": setup_sd15, "sd3": setup_sd3}


def setup(families, sd3_depth: int = SD3_DEPTH) -> dict:
    sys.path.insert(0, str(REPO))
    import cli
    cli.load_pack()
    from cli import runner
    work = harness.scratch_dir("kiln-bench-memory-")
    runner.boot_host(work)
    return {f: FAMILY_SETUPS[f](work, sd3_depth) if f == "sd3" else FAMILY_SETUPS[f](work) for f in families}


def measure(fn):
    from kiln.core.train.memory import measure_peak
    import torch
    device = "cuda" if torch.cuda.is_available() else "cpu"
    started = time.perf_counter()
    with measure_peak(device) as peak:
        out = fn()
    return peak.peak_bytes, time.perf_counter() - started, out


# base -> (weight storage, compute precision on CUDA); on CPU both trainers compute in fp32 (CPU bf16
# autocast is slower by two orders of magnitude), the weights stay stored as the base says.
BASES = {"fp32": ("float32", "fp32"), "bf16": ("bfloat16", "bf16"), "fp8": ("float8_e4m3fn", "bf16")}


def run_config(run: FamilyRun, base, checkpointing, batch, args, native: bool = True):
    import torch
    from kiln.core.net.spec import NetworkSpec
    from kiln.core.train.loop import TrainConfig
    from kiln.core.train.optim import OptimizerSpec
    from kiln.core.train.specs import SaveSpec
    from kiln.host.bake import bake
    from kiln.devtools.native import diffusion_weight_bytes, load_diffusion_model, native_options, train_lora_native
    dtype_name, compute = BASES[base]
    dtype = getattr(torch, dtype_name)
    if not torch.cuda.is_available():
        compute = "fp32"
    row = {}
    model = load_diffusion_model(run.path, dtype)
    row["weights"] = diffusion_weight_bytes(model)
    row["kiln"], row["kiln_s"], baked = measure(lambda: bake(
        model, run.clip, run.vae, run.dataset, NetworkSpec(rank=args.rank, alpha=1.0, targets="attn_mlp"),
        OptimizerSpec(name="adamw", lr=1e-4, scheduler="constant", max_grad_norm=0),
        TrainConfig(max_steps=args.steps, batch_size=batch, seed=0, probe_samples=0, mixed_precision=compute,
                    gradient_checkpointing=checkpointing, checkpoint_depth=args.checkpoint_depth),
        SaveSpec(output_name="bench_memory", save_state=False, cache_latents_to_disk=True)))
    estimate = baked.report.placement.estimate
    row["estimate"] = estimate.training_bytes() if estimate is not None else None
    del model
    if not native:
        return row
    bypass = base == "fp8"
    if bypass and "bypass_mode" not in native_options():
        row["native"] = None   # this host's node can't train on fp8 weights (no bypass mode)
        return row
    model = load_diffusion_model(run.path, dtype)
    try:
        with torch.inference_mode():
            row["native"], row["native_s"], _ = measure(lambda: train_lora_native(
                model, run.latents, run.positive, batch_size=batch, steps=args.steps, lr=1e-4, rank=args.rank,
                training_dtype=compute, gradient_checkpointing=checkpointing, bypass=bypass,
                checkpoint_depth=args.checkpoint_depth))
    except Exception as exc:   # the host's node may not train a family or setting: say so, keep Kiln's figures
        row["native"], row["native_error"] = None, f"{type(exc).__name__}: {str(exc)[:120]}"
    return row


def _ratio(a, b) -> str:
    return f"{a / b:.2f}" if a is not None and b else "n/a"


def main(argv=None):
    p = argparse.ArgumentParser()
    p.add_argument("--families", nargs="+", choices=list(FAMILY_SETUPS), default=list(FAMILY_SETUPS))
    p.add_argument("--steps", type=int, default=1)
    p.add_argument("--rank", type=int, default=8)
    p.add_argument("--quick", action="store_true", help="fp32 and fp8 at batch 4 only (a smoke run)")
    p.add_argument("--bases", nargs="+", choices=list(BASES), help="base weight dtypes (default: all)")
    p.add_argument("--batches", nargs="+", type=int, help="batch sizes (default: 1 4)")
    p.add_argument("--checkpoint-depth", type=int, default=1, help="with checkpointing: 1 each block, 2 each part")
    p.add_argument("--sd3-depth", type=int, default=SD3_DEPTH,
                   help=f"SD3's joint blocks (64 x depth wide; default {SD3_DEPTH}; SD3.5 medium has 24): "
                        "checkpointing's saving grows with the number of blocks")
    args = p.parse_args(argv)
    runs = setup(args.families, args.sd3_depth)
    if "sd3" in runs:
        print(f"sd3: {args.sd3_depth} joint blocks, {64 * args.sd3_depth} wide, 256 px", flush=True)
    bases = args.bases or (("fp32", "fp8") if args.quick else ("fp32", "bf16", "fp8"))
    batches = tuple(args.batches or ((4,) if args.quick else (1, 4)))
    rows = {}
    for family, run in runs.items():
        # Latents to Kiln's disk cache first, so its measured runs, like the native node's, encode none.
        for batch in batches:
            run_config(run, "fp32", False, batch, args, native=False)
        for base in bases:
            for batch in batches:
                for ck in (False, True):
                    rows[family, base, ck, batch] = r = run_config(run, base, ck, batch, args)
                    native = f"{r['native'] / MIB:8.1f}" if r["native"] is not None else "     n/a"
                    est = f"{r['estimate'] / MIB:7.1f}" if r["estimate"] is not None else "    n/a"
                    print(f"{family} {base:>4} ckpt {'on ' if ck else 'off'} batch {batch}: weights "
                          f"{r['weights'] / MIB:6.1f} MiB, training peak kiln {r['kiln'] / MIB:8.1f} MiB "
                          f"(estimate {est}, {_ratio(r['estimate'], r['kiln'])}), native {native} MiB, "
                          f"kiln/native {_ratio(r['kiln'], r['native'])}"
                          + (f" [native: {r['native_error']}]" if r.get("native_error") else ""), flush=True)
    print("\nratios")
    for (family, base, ck, batch), r in rows.items():
        if r["native"] is not None:
            print(f"  kiln/native {family} {base} ckpt {'on' if ck else 'off'} batch {batch}: "
                  f"{r['kiln'] / max(1, r['native']):.2f} (goal <= 1)")
    for (family, base, ck, batch), r in rows.items():
        if r["estimate"] is not None:
            print(f"  estimate/measured {family} {base} ckpt {'on' if ck else 'off'} batch {batch}: "
                  f"{r['estimate'] / max(1, r['kiln']):.2f} (goal 0.75-1.25)")
    for family in runs:
        for batch in batches:
            for ck in (False, True):
                if (family, "bf16", ck, batch) in rows and (family, "fp8", ck, batch) in rows:
                    b, f = rows[family, "bf16", ck, batch], rows[family, "fp8", ck, batch]
                    print(f"  kiln fp8/bf16 total (weights + training peak) {family} ckpt {'on' if ck else 'off'} "
                          f"batch {batch}: {(f['weights'] + f['kiln']) / (b['weights'] + b['kiln']):.2f} "
                          f"(weights alone {f['weights'] / b['weights']:.2f}; goal ~0.5)")
        for base in bases:
            for who in ("kiln", "native"):
                off, on = rows.get((family, base, False, 4)), rows.get((family, base, True, 4))
                if off and on and off[who] is not None and on[who]:
                    print(f"  {who} checkpointing off/on {family} {base} batch 4: {off[who] / on[who]:.2f}x (goal >= 3)")
    return rows


if __name__ == "__main__":
    main()
