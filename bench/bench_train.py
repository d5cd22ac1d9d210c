"""Kiln's Train node against the host's own TrainLoraNode on the same tiny model, images, rank, batch,
learning rate and steps, in one run. Each trainer runs in its own process so peak memory is its own.

    .venv/bin/python bench/bench_train.py [--steps 30] [--rank 8] [--batch 2] [--lr 5e-3] [--checkpointing]

Both trainers see every image of the set (the native node each image once, as its latent batch; Kiln its
N_name repeats). Prints steps/s, peak memory growth during training (RSS on CPU, max allocated on CUDA) and
the loss after training on a fixed-sample probe (same images, noise and noise levels for both) in two
metrics: the model's own target space (eps here; what Kiln minimises) and x0 MSE (what the native node
minimises), so neither trainer is graded only on the other's objective. Plus the ratios.
Targets: >= 1.5x native steps/s, peak memory no higher, loss no worse.
"""
from __future__ import annotations

import argparse
import json
import statistics
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "bench"))

import harness  # noqa: E402
from harness import RunMeter, native_inputs  # noqa: E402


def child(args) -> dict:
    sys.path.insert(0, str(REPO))
    import torch
    import cli
    cli.load_pack()
    from kiln.devtools import fixtures
    from cli import runner
    work = harness.scratch_dir("kiln-bench-")
    runner.boot_host(work)
    assets = fixtures.ensure_demo_assets(REPO / ".cache" / "test-assets")
    import nodes
    from kiln.core.data import DatasetConfig, load_dataset
    from kiln.devtools.fixed_sample import fixed_sample_loss
    dataset = load_dataset(DatasetConfig(path=str(assets.dataset_dir), resolution=64, min_bucket_reso=64,
                                         max_bucket_reso=128, bucket_reso_steps=64))
    cuda = torch.cuda.is_available()
    with torch.inference_mode():
        model, clip, vae = nodes.CheckpointLoaderSimple().load_checkpoint(assets.checkpoint_name)[:3]
        if args.which == "native":
            # The native node wants latents and conditioning made beforehand (not timed for it): every
            # image of the set once (its batches draw from all of them), with its caption.
            refs = native_refs(dataset)
            assert sorted(r.index for r in refs) == list(range(len(dataset))), "native must see every image"
            samples, positive = native_inputs(dataset, refs, vae, clip)
            latents = {"samples": samples}
        meter = RunMeter(cuda)
        if args.which == "kiln":
            from kiln.core.net.spec import NetworkSpec
            from kiln.core.train.loop import TrainConfig
            from kiln.core.train.optim import OptimizerSpec
            from kiln.core.train.specs import SaveSpec
            from kiln.host.bake import bake
            res = bake(model, clip, vae, dataset, NetworkSpec(rank=args.rank, alpha=1.0, targets=args.targets,
                                                              conv_rank=args.rank if args.targets == "full" else 0,
                                                              conv_alpha=1.0),
                       OptimizerSpec(name="adamw", lr=args.lr, scheduler="constant", weight_decay=0.01, max_grad_norm=0),
                       TrainConfig(max_steps=args.steps, batch_size=args.batch, seed=0, probe_samples=0,
                                   mixed_precision="fp32" if not cuda else "bf16",
                                   gradient_checkpointing=args.checkpointing),
                       SaveSpec(output_name="bench", save_state=False))
            trained = res.model
            loop_seconds = res.result.seconds
        else:
            from kiln.devtools.native import train_lora_native
            trained = train_lora_native(model, latents, positive, batch_size=args.batch, steps=args.steps,
                                        lr=args.lr, rank=args.rank, training_dtype="fp32" if not cuda else "bf16",
                                        gradient_checkpointing=args.checkpointing)
            loop_seconds = None
        seconds, peak = meter.stop()
        losses = {f"{key}_{space}": fixed_sample_loss(m, clip, vae, dataset, samples=16, space=space)
                  for key, m in (("loss_after", trained), ("loss_before", model)) for space in ("native", "x0")}
    return {"which": args.which, "steps_per_s": args.steps / seconds,
            "loop_steps_per_s": args.steps / loop_seconds if loop_seconds else 0.0, "seconds": seconds, "peak_bytes": peak,
            **losses, "device": "cuda" if cuda else "cpu"}


def native_refs(dataset) -> list:
    """One sample of each image (centre crop, no flip: the first epoch's draw of it), in image order."""
    first = {}
    for batch in dataset.epoch_plan(0, 1, 0):
        for ref in batch:
            first.setdefault(ref.index, ref)
    return [first[i] for i in sorted(first)]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--rank", type=int, default=8)
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--lr", type=float, default=5e-3)
    p.add_argument("--checkpointing", action="store_true")
    p.add_argument("--targets", default="full", choices=["attn", "attn_mlp", "full"],
                   help="Kiln's targets; 'full' (with conv rank = rank) trains what the native node trains, "
                        "less norms and biases")
    p.add_argument("--repeats", type=int, default=3, help="runs of each trainer; medians are reported")
    p.add_argument("--which", choices=["kiln", "native"])
    args = p.parse_args()
    if args.which:
        print("RESULT " + json.dumps(child(args)))
        return
    runs = {"native": [], "kiln": []}
    for _ in range(args.repeats):  # alternate, so background load hits both alike
        for which in ("native", "kiln"):
            cmd = [sys.executable, __file__, "--which", which, "--steps", str(args.steps), "--rank", str(args.rank),
                   "--batch", str(args.batch), "--lr", str(args.lr), "--targets", args.targets] + \
                (["--checkpointing"] if args.checkpointing else [])
            out = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, PYTHONUNBUFFERED="1"))
            line = [l for l in out.stdout.splitlines() if l.startswith("RESULT ")]
            if out.returncode or not line:
                print(out.stdout[-3000:], out.stderr[-3000:])
                raise SystemExit(f"{which} run failed")
            runs[which].append(json.loads(line[0][7:]))
    results = {w: {key: (statistics.median(r[key] for r in rs) if isinstance(rs[0][key], (int, float)) else rs[0][key])
                   for key in rs[0]} for w, rs in runs.items()}
    n, k = results["native"], results["kiln"]
    print(f"device {k['device']}, steps {args.steps}, rank {args.rank}, batch {args.batch}, lr {args.lr}, "
          f"checkpointing {args.checkpointing}, kiln targets {args.targets}, medians of {args.repeats} runs each")
    for r in (n, k):
        print(f"{r['which']:>6}: {r['steps_per_s']:.2f} steps/s, peak +{r['peak_bytes'] / 2**20:.0f} MiB, "
              f"fixed-sample loss eps {r['loss_before_native']:.4f} -> {r['loss_after_native']:.4f}, "
              f"x0 MSE {r['loss_before_x0']:.4f} -> {r['loss_after_x0']:.4f}")
    print(f"  (kiln's training loop alone, without its set-up and saves: {k['loop_steps_per_s']:.2f} steps/s)")
    print(f"speed ratio kiln/native (whole node calls): {k['steps_per_s'] / n['steps_per_s']:.2f}x (target >= 1.5)")
    print(f"peak memory ratio kiln/native: {k['peak_bytes'] / max(1, n['peak_bytes']):.2f} (target <= 1)")
    for space, label in (("native", "eps (Kiln's objective)"), ("x0", "x0 MSE (the native node's objective)")):
        print(f"loss ratio kiln/native after training, {label}: "
              f"{k[f'loss_after_{space}'] / n[f'loss_after_{space}']:.3f} (target <= 1)")


if __name__ == "__main__":
    main()
