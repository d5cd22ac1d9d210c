"""Speed and peak memory of training at real model widths: Kiln's Train vs the host's TrainLoraNode, at the
VRAM presets, bf16 and fp8 base weights. Models are built from the host's own supported_models configs with
random weights (nothing is downloaded); the text encoder is a one-layer CLIP from the host's class whose
width matches what the diffusion model reads.

    python bench/bench_gpu.py                      # a CUDA machine: real widths (SDXL 2.6B, Flux.1 12B, Qwen-Image 20B)
    python bench/bench_gpu.py --tiny --steps 1     # anywhere: the same code at tiny widths (what the test runs)
    python bench/bench_gpu.py --check [--tiny]     # bench/gpu_check.sh: widths x families x base x checkpointing

Prints, per family / base dtype / preset: steps/s and peak memory (max allocated on CUDA, the allocator's
records on CPU) for both trainers and their ratios. A configuration that runs out of memory prints OOM.
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from dataclasses import replace
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "bench"))

import harness  # noqa: E402
from harness import native_inputs  # noqa: E402

GIB = 2 ** 30

# family -> (the host's supported_models config class, real-width overrides of the tiny fixture's kwargs,
# image size at real width). The pooled-vector width follows the context width, because the bench's
# text encoder pools at its own width (a single Linear of the model is a little wider than the original).
REAL = {
    # SDXL's UNet at its real layout; the adm vector is the pooled text width + SDXL's six size embeddings.
    "sdxl": ("SDXL", dict(model_channels=320, num_res_blocks=[2, 2, 2], channel_mult=[1, 2, 4],
                          transformer_depth=[0, 0, 2, 2, 10, 10],
                          transformer_depth_output=[0, 0, 0, 2, 2, 2, 10, 10, 10],
                          transformer_depth_middle=10, context_dim=2048, adm_in_channels=2048 + 6 * 256), 1024),
    "flux1-dev": ("Flux", dict(hidden_size=3072, num_heads=24, depth=19, depth_single_blocks=38, context_in_dim=4096,
                               vec_in_dim=4096), 1024),
    "qwen-image": ("QwenImage", dict(num_layers=60, attention_head_dim=128, num_attention_heads=24,
                                     joint_attention_dim=3584), 1024),
}
DTYPES = {"bf16": "bfloat16", "fp8": "float8_e4m3fn"}
PRESETS = ("8 GB", "12 GB", "16 GB", "24 GB")


def build(family: str, tiny: bool, base: str, device):
    """(MODEL, CLIP, VAE, image size) for the family at tiny or real width, weights stored as ``base``."""
    import torch
    import comfy.model_management as mm
    import comfy.model_patcher
    import comfy.sd
    import comfy.supported_models as sm
    from kiln.devtools import family_fixtures as ff
    config_name, real, size = REAL[family]
    spec = ff.FAMILIES[family]
    # The constructor options this host's class takes (older hosts lack some, e.g. Flux's txt_ids_dims).
    tiny_kwargs = ff.host_kwargs(family) if hasattr(ff, "host_kwargs") else dict(spec.kwargs)
    kwargs = tiny_kwargs if tiny else {**tiny_kwargs, **real}
    width = kwargs.get("context_in_dim", kwargs.get("joint_attention_dim", kwargs.get("context_dim")))
    config = getattr(sm, config_name)(dict(kwargs))
    dtype = getattr(torch, DTYPES[base])
    compute = torch.bfloat16 if device.type == "cuda" else torch.float32
    config.set_inference_dtype(dtype, compute if dtype != compute else None)
    model = config.get_model({}, device=device)
    with torch.no_grad():
        gen = torch.Generator(device=device).manual_seed(0)
        # Norm scales by module type, not by name: a UNet's GroupNorms are "in_layers.0", "out.0"..., and a
        # zeroed one passes no gradient back (Kiln's training guard stops such a bake).
        norm_scales = {f"{n}.weight" for n, m in model.diffusion_model.named_modules()
                       if isinstance(m, (torch.nn.GroupNorm, torch.nn.LayerNorm)) or "norm" in type(m).__name__.lower()}
        for name, p in model.diffusion_model.named_parameters():
            if name in norm_scales or ("norm" in name.lower() and p.dim() == 1):
                p.fill_(1.0)
            elif p.dim() >= 2:
                w = torch.randn(p.shape, generator=gen, device=device, dtype=torch.float32) / math.sqrt(p[0].numel())
                p.copy_(w.to(p.dtype))
            else:
                p.zero_()
    patcher = comfy.model_patcher.ModelPatcher(model, load_device=device, offload_device=mm.unet_offload_device())
    # The 2026 host's TrainLoraNode rebuilds its own copy of the model through this (as from a loader).
    patcher.cached_patcher_init = (_rebuild, (family, tiny, base, str(device)))
    clip = ff.tiny_text_encoder(family) if tiny else _clip_of_width(ff, family, width)
    vae = comfy.sd.VAE(sd=ff.tiny_vae_state_dict(spec.latent_channels))
    return patcher, clip, vae, (64 if tiny else size)


def _rebuild(family, tiny, base, device, disable_dynamic=True):
    import torch
    return build(family, tiny, base, torch.device(device))[0]


def _clip_of_width(ff, family, width):
    saved = ff.FAMILIES[family]
    ff.FAMILIES[family] = replace(saved, context_dim=width)
    try:
        return ff.tiny_text_encoder(family)
    finally:
        ff.FAMILIES[family] = saved


def timed(fn, device):
    from kiln.core.train.memory import measure_peak
    started = time.perf_counter()
    try:
        with measure_peak(device) as peak:
            fn()
    except Exception as exc:   # noqa: BLE001  the table says which configuration failed and why
        if "out of memory" in str(exc).lower():
            return None, None, "OOM"
        return None, None, f"failed ({type(exc).__name__}: {str(exc).splitlines()[0][:120]})"
    return time.perf_counter() - started, peak.peak_bytes, ""


def run(family, base, preset, args, device, data_root, tiny=None, checkpointing=None):
    """One configuration, both trainers: at a VRAM ``preset``, or (preset None) batch 1 with ``checkpointing``."""
    import torch
    from kiln.core.data import DatasetConfig, load_dataset
    from kiln.core.net.spec import NetworkSpec
    from kiln.core.train.loop import TrainConfig
    from kiln.core.train.optim import OptimizerSpec
    from kiln.core.train.presets import apply_vram_class
    from kiln.devtools import fixtures
    from kiln.core.train.specs import SaveSpec
    from kiln.host.bake import bake
    from kiln.devtools.native import native_options, train_lora_native
    model, clip, vae, size = build(family, args.tiny if tiny is None else tiny, base, device)
    data = fixtures.write_shapes_dataset(data_root / f"{size}", size=size)
    dataset = load_dataset(DatasetConfig(path=str(data), resolution=size, min_bucket_reso=size, max_bucket_reso=size,
                                         bucket_reso_steps=min(64, size)))
    compute = "bf16" if device.type == "cuda" else "fp32"
    cfg = TrainConfig(max_steps=args.steps, seed=0, probe_samples=0, mixed_precision=compute)
    cfg = apply_vram_class(cfg, preset) if preset else replace(cfg, gradient_checkpointing=bool(checkpointing))
    row = {"batch": cfg.batch_size, "ckpt": cfg.gradient_checkpointing}
    seconds, peak, err = timed(lambda: bake(
        model, clip, vae, dataset, NetworkSpec(rank=args.rank, alpha=1.0, targets="attn_mlp"),
        OptimizerSpec(name="adamw", lr=1e-4, scheduler="constant", max_grad_norm=0), cfg,
        SaveSpec(output_name=f"bench_gpu_{family}", save_state=False)), device)
    row["kiln"] = (args.steps / seconds if seconds else None, peak, err)
    if base == "fp8" and "bypass_mode" not in native_options():
        row["native"] = (None, None, "n/a")
        return row
    latents, positive = native_inputs(dataset, [r for b in dataset.epoch_plan(0, 1, 0) for r in b][: len(dataset)],
                                      vae, clip)
    with torch.inference_mode():
        seconds, peak, err = timed(lambda: train_lora_native(
            model, latents, positive, batch_size=cfg.batch_size, steps=args.steps, lr=1e-4, rank=args.rank,
            training_dtype=compute, gradient_checkpointing=cfg.gradient_checkpointing, bypass=base == "fp8"), device)
    row["native"] = (args.steps / seconds if seconds else None, peak, err)
    return row


def main(argv=None):
    p = argparse.ArgumentParser()
    p.add_argument("--tiny", action="store_true", help="tiny widths (CPU test); default real widths")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--rank", type=int, default=16)
    p.add_argument("--families", nargs="+", default=list(REAL), choices=list(REAL))
    p.add_argument("--bases", nargs="+", default=list(DTYPES), choices=list(DTYPES))
    p.add_argument("--presets", nargs="+", default=list(PRESETS), choices=list(PRESETS))
    p.add_argument("--check", action="store_true",
                   help="the GPU check (bench/gpu_check.sh): tiny then (without --tiny) real widths, each family, base "
                        "dtype and checkpointing off/on at batch 1, as one table; rows past --budget-s are skipped")
    p.add_argument("--budget-s", type=float, default=420.0, help="--check: seconds after which rows are skipped")
    args = p.parse_args(argv)
    sys.path.insert(0, str(REPO))
    import torch
    import cli
    cli.load_pack()
    from cli import runner
    work = harness.scratch_dir("kiln-bench-gpu-")
    runner.boot_host(work)
    from kiln.devtools import family_fixtures as ff
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if args.check:
        return check(args, device, work, ff)
    print(f"device {device}, {'tiny' if args.tiny else 'real'} widths, {args.steps} steps, rank {args.rank}")
    rows = {}
    for family in args.families:
        missing = ff.available(family)
        if missing:
            print(f"{family}: skipped, {missing}")
            continue
        for base in args.bases:
            for preset in args.presets:
                r = rows[family, base, preset] = run(family, base, preset, args, device, work / "data")

                def fmt(t):
                    sps, peak, err = t
                    return err or f"{sps:.3f} steps/s, peak {peak / GIB:.3f} GiB"
                ratio = ""
                if not r["kiln"][2] and not r["native"][2]:
                    ratio = (f"; kiln/native speed {r['kiln'][0] / r['native'][0]:.2f}x, "
                             f"memory {r['kiln'][1] / max(1, r['native'][1]):.2f}")
                print(f"{family} {base} {preset} (batch {r['batch']}, checkpointing {r['ckpt']}): "
                      f"kiln {fmt(r['kiln'])}; native {fmt(r['native'])}{ratio}", flush=True)
    return rows


CHECK_COLUMNS = ("width", "family", "base", "ckpt", "kiln steps/s", "kiln peak GiB", "host steps/s", "host peak GiB",
                 "speed x", "memory x")


def check(args, device, work, ff) -> list[dict]:
    """Every (width, family, base, checkpointing) at batch 1, both trainers, printed as one table at the end (and
    each row as it finishes). A row that would start after ``--budget-s`` is listed as skipped, not run."""
    started = time.perf_counter()
    rows = []
    for tiny in ([True] if args.tiny else [True, False]):
        for family in args.families:
            missing = ff.available(family)
            for base in args.bases:
                for ckpt in (False, True):
                    row = {"width": "tiny" if tiny else "real", "family": family, "base": base, "ckpt": ckpt}
                    if missing:
                        row["note"] = f"skipped: {missing}"
                    elif time.perf_counter() - started > args.budget_s:
                        row["note"] = f"skipped: past the {args.budget_s:.0f} s budget"
                    else:
                        r = run(family, base, None, args, device, work / "data", tiny=tiny, checkpointing=ckpt)
                        row.update(kiln=r["kiln"], native=r["native"])
                    rows.append(row)
                    print("row " + " | ".join(check_cells(row)), flush=True)
    print(f"device {device}, {args.steps} steps, rank {args.rank}, attn_mlp targets, batch 1, "
          f"{time.perf_counter() - started:.0f} s; steps/s of whole trainer calls, peak = max allocated (CUDA) "
          f"or the allocator's records (CPU)")
    print(check_table(rows))
    return rows


def check_cells(row) -> list[str]:
    def figures(t):
        sps, peak, err = t
        return [err, ""] if err else [f"{sps:.3f}", f"{peak / GIB:.3f}"]
    cells = [row["width"], row["family"], row["base"], "on" if row["ckpt"] else "off"]
    if "note" in row:
        return cells + [row["note"]] + [""] * 5
    k, n = row["kiln"], row["native"]
    ratios = ([f"{k[0] / n[0]:.2f}", f"{k[1] / max(1, n[1]):.2f}"] if not (k[2] or n[2]) else ["", ""])
    return cells + figures(k) + figures(n) + ratios


def check_table(rows) -> str:
    cells = [list(CHECK_COLUMNS)] + [check_cells(r) for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(len(CHECK_COLUMNS))]
    return "\n".join(" | ".join(c.ljust(w) for c, w in zip(line, widths)).rstrip() for line in cells)


if __name__ == "__main__":
    main()
