"""Per model family: Kiln's Train (bake) against the host's own TrainLoraNode on the same tiny model
(devtools/family_fixtures.py: built with the host's classes, random weights), images, rank, batch, learning
rate and steps, in one run. Each trainer runs in its own process, so peak memory is its own.

    python bench/bench_families.py [--families flux1-dev,sd3,...] [--steps 10]

    python bench/bench_families.py --batches 1,2 [--families ltxv,krea2,...]

Prints per family: steps/s and peak memory growth (RSS on CPU, max allocated on CUDA) of both, and the
ratios kiln/native. With --batches, Kiln alone at each batch size on the 2026 host's other families (the
default list there: NEW_FAMILIES, the families of tests/test_host_families_all.py, built from their config
classes): seconds per step at each batch, and the memory each grows beyond a batch-1 step.

Where the host's node cannot train a family (it raises), the native column says so and Kiln's figures stand
alone. Kiln trains its family default targets (attn_mlp) at the given rank; the
native node trains every Linear/Conv weight of the diffusion model, so Kiln does less work per step by
design (what the field's trainers train), which the printed adapter counts show."""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "bench"))

import harness  # noqa: E402
from harness import RunMeter, native_inputs  # noqa: E402

FAMILIES = ["flux1-dev", "sd3", "chroma", "flux2", "qwen-image", "z-image", "wan", "wan2.2-5b", "hidream", "lumina2"]
# devtools.family_fixtures.NEW_FAMILIES (read by name so the parent process needs no host).
NEW_FAMILIES = ["ltxv", "ltxav", "hunyuan-video-1.5", "hunyuan-video", "hunyuan-image-2.1", "kandinsky5",
                "kandinsky5-image", "krea2", "ideogram4", "longcat-image", "omnigen2", "auraflow", "pixart-sigma",
                "pixart-alpha", "hunyuan-dit", "stable-cascade-c", "ernie-image", "anima", "cosmos-predict2",
                "joyimage", "cogvideox", "chroma-radiance", "hidream-o1"]


def child(args) -> dict:
    sys.path.insert(0, str(REPO))
    import torch
    import cli
    cli.load_pack()
    from kiln.devtools import family_fixtures as ff, fixtures
    from cli import runner
    runner.boot_host(harness.scratch_dir("kiln-bench-"))
    reason = ff.available(args.family)
    if reason:
        return {"which": args.which, "skipped": reason}
    assets = fixtures.ensure_demo_assets(REPO / ".cache" / "test-assets")
    fam = ff.ensure_family_assets(args.family, REPO / ".cache" / "test-assets")
    import nodes
    from kiln.core.data import DatasetConfig, load_dataset
    reso = ff.FAMILIES[args.family].resolution
    dataset = load_dataset(DatasetConfig(path=str(assets.dataset_dir), resolution=reso, min_bucket_reso=reso,
                                         max_bucket_reso=reso, bucket_reso_steps=64))
    cuda = torch.cuda.is_available()
    model, _ = ff.load_model(args.family, fam.unet_name)
    clip = ff.tiny_text_encoder(args.family, cache_dir=REPO / ".cache" / "test-assets")
    with torch.inference_mode():
        vae = nodes.VAELoader().load_vae(fam.vae_name)[0]
        if args.which == "native":
            # The native node takes latents and conditioning made beforehand (not timed for it).
            refs = [b[0] for b in dataset.epoch_plan(0, 1, 0)][: args.batch * 2]
            samples, positive = native_inputs(dataset, refs, vae, clip)
            if getattr(model.model.latent_format, "latent_dimensions", 2) == 3 and samples.dim() == 4:
                samples = samples.unsqueeze(2)
    if args.warmup and args.which == "kiln":
        # One untimed step at batch 1 first: the timed run pays no first-call costs (lazy imports, latent encoding),
        # and its memory growth is what it needs beyond a batch-1 step.
        from kiln.core.net.spec import NetworkSpec
        from kiln.core.train.loop import TrainConfig
        from kiln.core.train.optim import OptimizerSpec
        from kiln.core.train.specs import SaveSpec
        from kiln.host.bake import bake
        with torch.inference_mode():
            bake(model, clip, vae, dataset, NetworkSpec(rank=args.rank, alpha=args.rank), OptimizerSpec(lr=args.lr),
                 TrainConfig(max_steps=1, batch_size=1, seed=0, probe_samples=0),
                 SaveSpec(output_name=f"bench_{args.family}_warmup", save_state=False))
    meter = RunMeter(cuda)
    adapters = None
    try:
        with torch.inference_mode():
            if args.which == "kiln":
                from kiln.core.net.spec import NetworkSpec
                from kiln.core.train.loop import TrainConfig
                from kiln.core.train.optim import OptimizerSpec
                from kiln.core.train.specs import SaveSpec
                from kiln.host.bake import bake
                res = bake(model, clip, vae, dataset, NetworkSpec(rank=args.rank, alpha=args.rank),
                           OptimizerSpec(name="adamw", lr=args.lr, scheduler="constant", max_grad_norm=0),
                           TrainConfig(max_steps=args.steps, batch_size=args.batch, seed=0, probe_samples=0),
                           SaveSpec(output_name=f"bench_{args.family}", save_state=False))
                adapters = len({k.split(".", 1)[0] for k in res.lora.tensors})
            else:
                from kiln.devtools.native import train_lora_native
                train_lora_native(model, samples, positive, batch_size=args.batch, steps=args.steps, lr=args.lr,
                                  rank=args.rank, training_dtype="bf16" if cuda else "fp32")
    except Exception as exc:  # the host's node may not train a family: say so, keep Kiln's figures
        meter.stop()
        return {"which": args.which, "skipped": f"{type(exc).__name__}: {str(exc)[:160]}"}
    seconds, peak = meter.stop()
    return {"which": args.which, "steps_per_s": args.steps / seconds, "peak_bytes": peak, "adapters": adapters,
            "device": "cuda" if cuda else "cpu"}


def run_child(which: str, family: str, batch: int, args, warmup: bool = False) -> dict:
    """One trainer on one family in its own process (so its peak memory is its own)."""
    cmd = [sys.executable, __file__, "--which", which, "--family", family, "--steps", str(args.steps),
           "--rank", str(args.rank), "--batch", str(batch), "--lr", str(args.lr)] + (["--warmup"] if warmup else [])
    out = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, PYTHONUNBUFFERED="1"))
    line = [l for l in out.stdout.splitlines() if l.startswith("RESULT ")]
    return json.loads(line[0][7:]) if line else {"skipped": f"exit {out.returncode}: {out.stderr[-300:]}"}


def by_batch(families: list[str], batches: list[int], args) -> None:
    """Kiln per family at each batch size, each run in its own process after one untimed batch-1 step: seconds per
    step, and the memory the run grows beyond that batch-1 step (RSS on CPU, allocator peak on CUDA): the extra
    memory of the batch over batch 1."""
    print(f"steps {args.steps}, rank {args.rank}, lr {args.lr}, batches {batches}; one process per run")
    for family in families:
        runs = [(b, run_child("kiln", family, b, args, warmup=True)) for b in batches]
        cells = [f"batch {b}: not run ({r['skipped']})" if "skipped" in r else
                 f"batch {b}: {1 / r['steps_per_s']:.3f} s/step, "
                 f"+{r['peak_bytes'] / 2**20:.0f} MiB beyond a batch-1 step"
                 for b, r in runs]
        adapters = next((r["adapters"] for _, r in runs if "adapters" in r), "?")
        print(f"{family:>18}: {adapters} adapters; " + "; ".join(cells), flush=True)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--families", default=",".join(FAMILIES))
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--rank", type=int, default=4)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--which", choices=["kiln", "native"])
    p.add_argument("--family")
    p.add_argument("--warmup", action="store_true", help="(child) one untimed step before the timed run")
    p.add_argument("--batches", default="", help="Kiln alone at these batch sizes (e.g. 1,2): s/step and the "
                                                  "extra memory over batch 1")
    args = p.parse_args()
    if args.which:
        print("RESULT " + json.dumps(child(args)))
        return
    if args.batches:
        families = args.families if args.families != ",".join(FAMILIES) else ",".join(NEW_FAMILIES)
        return by_batch(families.split(","), [int(b) for b in args.batches.split(",")], args)
    print(f"steps {args.steps}, rank {args.rank}, batch {args.batch}, lr {args.lr}; one process per trainer")
    for family in args.families.split(","):
        res = {which: run_child(which, family, args.batch, args) for which in ("native", "kiln")}
        k, n = res["kiln"], res["native"]
        if "skipped" in k:
            print(f"{family:>13}: skipped ({k['skipped']})")
            continue
        line = (f"{family:>13}: kiln {k['steps_per_s']:.2f} steps/s, peak +{k['peak_bytes'] / 2**20:.0f} MiB, "
                f"{k['adapters']} adapters")
        if "skipped" in n:
            line += f" | native: not run ({n['skipped']})"
        else:
            line += (f" | native {n['steps_per_s']:.2f} steps/s, peak +{n['peak_bytes'] / 2**20:.0f} MiB | "
                     f"speed {k['steps_per_s'] / n['steps_per_s']:.2f}x, memory {k['peak_bytes'] / max(1, n['peak_bytes']):.2f}x")
        print(line, flush=True)


if __name__ == "__main__":
    main()
