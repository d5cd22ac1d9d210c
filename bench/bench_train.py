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
import contextlib
import json
import statistics
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "bench"))

import harness  # noqa: E402
from harness import RunMeter, native_inputs  # noqa: E402


def child(args) -> dict:
    sys.path.insert(0, str(REPO))
    import torch
    if args.threads:
        torch.set_num_threads(args.threads)
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
    data_dir = assets.dataset_dir if args.resolution == 64 else fixtures.write_shapes_dataset(work / "data", args.resolution)
    res = args.resolution
    dataset = load_dataset(DatasetConfig(path=str(data_dir), resolution=res, min_bucket_reso=res,
                                         max_bucket_reso=2 * res, bucket_reso_steps=64))
    cuda = torch.cuda.is_available()
    with torch.inference_mode():
        model, clip, vae = nodes.CheckpointLoaderSimple().load_checkpoint(assets.checkpoint_name)[:3]
        prep_seconds = 0.0
        if args.which == "native":
            # The native node wants latents and conditioning made beforehand (not timed for it: the VAE Encode
            # and CLIP Text Encode nodes of its graph, timed apart as prep_seconds): every image of the set once
            # (its batches draw from all of them), with its caption.
            refs = native_refs(dataset)
            assert sorted(r.index for r in refs) == list(range(len(dataset))), "native must see every image"
            started = time.perf_counter()
            samples, positive = native_inputs(dataset, refs, vae, clip)
            prep_seconds = time.perf_counter() - started
            latents = {"samples": samples}
        profiled = {}
        phases: dict = {}
        with profiling(args, model, profiled), call_phases(phases):
            meter, trained, loop_seconds = train(args, model, clip, vae, dataset, latents if args.which == "native"
                                                 else None, positive if args.which == "native" else None, cuda)
            seconds, peak = meter.stop()
        if args.profile:
            import profile_step
            return {"which": args.which, "profile": profiled["rows"], "flops": dict(profile_step.FLOPS),
                    "device": "cuda" if cuda else "cpu"}
        losses = {} if args.speed_only else {
            f"{key}_{space}": fixed_sample_loss(m, clip, vae, dataset, samples=16, space=space)
            for key, m in (("loss_after", trained), ("loss_before", model)) for space in ("native", "x0")}
    return {"which": args.which, "steps_per_s": args.steps / seconds, "prep_seconds": prep_seconds, "phases": phases,
            "loop_steps_per_s": args.steps / loop_seconds if loop_seconds else 0.0, "seconds": seconds, "peak_bytes": peak,
            **losses, "device": "cuda" if cuda else "cpu"}


@contextlib.contextmanager
def profiling(args, model, into: dict):
    """With --profile: the step profiler over the run (profile_step.py), its rows put in ``into``."""
    if not args.profile:
        yield
        return
    import profile_step
    prof = profile_step.profiler(args.steps - 2, lambda rows: into.update(rows=rows))
    with profile_step.instrument(type(model.model.diffusion_model), prof), prof:
        yield


@contextlib.contextmanager
def call_phases(into: dict):
    """Seconds of the parts of Kiln's node call (summed per part), by wrapping them for the ``with``: encoding the
    run's latents and captions, the pre-flight trace, the training loop, the saves and the in-graph LoRA."""
    try:
        from kiln.core.train import loop, saves
        from kiln.host import bake, placement
    except ImportError:
        yield
        return
    parts = [(placement, "precache", "encode latents and captions"), (placement, "trace_training_step",
             "pre-flight trace"), (placement, "load_for_training", "load"), (loop.Trainer, "run", "training loop"),
             (saves.RunSaver, "__call__", "save"), (bake.Bake, "apply", "in-graph LoRA")]
    saved = []
    for owner, attr, label in parts:
        real = getattr(owner, attr)
        saved.append((owner, attr, real))

        def timed(*a, _real=real, _label=label, **k):
            started = time.perf_counter()
            try:
                return _real(*a, **k)
            finally:
                into[_label] = into.get(_label, 0.0) + time.perf_counter() - started
        setattr(owner, attr, timed)
    try:
        yield
    finally:
        for owner, attr, real in saved:
            setattr(owner, attr, real)


def train(args, model, clip, vae, dataset, latents, positive, cuda):
    """One trainer's run: (meter started before it, the trained MODEL, Kiln's loop seconds or None)."""
    meter = RunMeter(cuda)
    precision = "fp32" if not cuda else "bf16"
    if args.which == "native":
        from kiln.devtools.native import train_lora_native
        return meter, train_lora_native(model, latents, positive, batch_size=args.batch, steps=args.steps,
                                        lr=args.lr, rank=args.rank, training_dtype=precision,
                                        gradient_checkpointing=args.checkpointing), None
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
                           mixed_precision=precision, gradient_checkpointing=args.checkpointing),
               SaveSpec(output_name="bench", save_state=False))
    return meter, res.model, res.result.seconds


def native_refs(dataset) -> list:
    """One sample of each image (centre crop, no flip: the first epoch's draw of it), in image order."""
    first = {}
    for batch in dataset.epoch_plan(0, 1, 0):
        for ref in batch:
            first.setdefault(ref.index, ref)
    return [first[i] for i in sorted(first)]


def run_child(which: str, args) -> dict:
    cmd = [sys.executable, __file__, "--which", which, "--steps", str(args.steps), "--rank", str(args.rank),
           "--batch", str(args.batch), "--lr", str(args.lr), "--targets", args.targets,
           "--resolution", str(args.resolution), "--threads", str(args.threads)] + \
        (["--checkpointing"] if args.checkpointing else []) + (["--profile"] if args.profile else []) + \
        (["--speed-only"] if args.speed_only else [])
    out = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, PYTHONUNBUFFERED="1"))
    line = [l for l in out.stdout.splitlines() if l.startswith("RESULT ")]
    if out.returncode or not line:
        print(out.stdout[-3000:], out.stderr[-3000:])
        raise SystemExit(f"{which} run failed")
    return json.loads(line[0][7:])


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
    p.add_argument("--resolution", type=int, default=256, help="image size in pixels (square)")
    p.add_argument("--profile", action="store_true",
                   help="instead of timing whole runs: where one step's time goes, per phase (profile_step.py), "
                        "averaged over the run's steps after the first two, both trainers side by side")
    p.add_argument("--threads", type=int, default=0,
                   help="torch CPU threads in each run (0: torch's default); 1 keeps a run on a shared machine "
                        "from waiting on a descheduled worker thread at every op")
    p.add_argument("--speed-only", action="store_true",
                   help="time and memory only: skip the fixed-sample loss probes after training")
    p.add_argument("--which", choices=["kiln", "native"])
    args = p.parse_args()
    if args.which:
        print("RESULT " + json.dumps(child(args)))
        return
    if args.profile and args.steps < 3:
        raise SystemExit("--profile needs --steps 3 or more (one skipped, one warm-up, the rest profiled)")
    runs = {"native": [], "kiln": []}
    for _ in range(args.repeats):  # alternate, so background load hits both alike
        for which in ("kiln", "native"):
            runs[which].append(run_child(which, args))
    if args.profile:
        print(f"device {runs['kiln'][0]['device']}, {args.resolution} px, rank {args.rank}, batch {args.batch}, "
              f"kiln targets {args.targets}, checkpointing {args.checkpointing}; ms per step, medians of "
              f"{args.repeats} runs of {args.steps - 2} profiled steps each (profiler overhead included)")
        import profile_step
        print(profile_step.table({w: {row: statistics.median(r["profile"][row] for r in rs) for row in profile_step.ROWS}
                                  for w, rs in (("kiln", runs["kiln"]), ("host TrainLoraNode", runs["native"]))}))
        print(f"host's step ({args.targets} does not change it: the host trains every layer): "
              + profile_step.compute_limit(runs["native"][0]["flops"], runs["kiln"][0]["flops"].get("branch", 0.0)))
        for w in ("kiln", "native"):
            print(f"{w} backward other ops (first run, ms per step): {profile_step.top_other_ops(runs[w][0]['profile'])}")
        return
    results = {w: {key: (statistics.median(r[key] for r in rs) if isinstance(rs[0][key], (int, float)) else rs[0][key])
                   for key in rs[0]} for w, rs in runs.items()}
    n, k = results["native"], results["kiln"]
    k["phases"] = {name: statistics.median(r["phases"].get(name, 0.0) for r in runs["kiln"]) for name in k["phases"]}
    print(f"device {k['device']}, {args.resolution} px, steps {args.steps}, rank {args.rank}, batch {args.batch}, lr {args.lr}, "
          f"checkpointing {args.checkpointing}, kiln targets {args.targets}, medians of {args.repeats} runs each")
    for r in (n, k):
        print(f"{r['which']:>6}: {r['steps_per_s']:.2f} steps/s, peak +{r['peak_bytes'] / 2**20:.0f} MiB"
              + ("" if args.speed_only else
                 f", fixed-sample loss eps {r['loss_before_native']:.4f} -> {r['loss_after_native']:.4f}, "
                 f"x0 MSE {r['loss_before_x0']:.4f} -> {r['loss_after_x0']:.4f}"))
    print(f"  (kiln's training loop alone, without its set-up and saves: {k['loop_steps_per_s']:.2f} steps/s)")
    print(f"speed ratio kiln/native (whole node calls): {k['steps_per_s'] / n['steps_per_s']:.2f}x (target >= 1.5)")
    print(f"speed ratio kiln's loop / native's whole call (the step; native's set-up is small, its inputs are made "
          f"beforehand): {k['loop_steps_per_s'] / n['steps_per_s']:.2f}x")
    prep = n["prep_seconds"]
    print(f"speed ratio with the native graph's input encoding (VAE Encode, CLIP Text Encode: {prep:.1f} s) counted: "
          f"{(n['seconds'] + prep) / k['seconds']:.2f}x")
    print("kiln's call (s): " + ", ".join(f"{name} {sec:.2f}" for name, sec in k["phases"].items())
          + f", rest {k['seconds'] - sum(k['phases'].values()):.2f} of {k['seconds']:.1f}")
    print(f"peak memory ratio kiln/native: {k['peak_bytes'] / max(1, n['peak_bytes']):.2f} (target <= 1)")
    for space, label in (() if args.speed_only else
                         (("native", "eps (Kiln's objective)"), ("x0", "x0 MSE (the native node's objective)"))):
        print(f"loss ratio kiln/native after training, {label}: "
              f"{k[f'loss_after_{space}'] / n[f'loss_after_{space}']:.3f} (target <= 1)")


if __name__ == "__main__":
    main()
