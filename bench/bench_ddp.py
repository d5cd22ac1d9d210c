"""Data-parallel scaling: the same tiny-model training through `torchrun --nproc_per_node N -m cli run`
for N = 1 and 2 (or --nprocs), per-rank batch fixed, so N ranks process N times the samples per step.

    .venv/bin/python bench/bench_ddp.py [--nprocs 1 2] [--steps 20] [--batch 2] [--rounds 1]

Prints, per N, steps/s and samples/s of the training loop (rank 0's own figure: loop time only, model
loading excluded) and the scaling efficiency samples/s(N) / (N x samples/s(1)). On CPU the ranks use
gloo and share the machine's cores (each rank gets cores / N threads); on a machine with N GPUs the same
command uses NCCL, one GPU per rank, and bf16 where the GPU has it.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TRAINED = re.compile(r"Kiln: trained (\d+) steps in ([\d.]+) s")


def prepare(work: Path) -> str:
    """The tiny checkpoint and image set in ``work`` (models/checkpoints, input/); returns the checkpoint name."""
    sys.path.insert(0, str(REPO))
    import cli
    cli.load_pack()
    from kiln.devtools import fixtures
    from cli import runner
    runner.boot_host(work)
    assets = fixtures.ensure_demo_assets(REPO / ".cache" / "test-assets")
    shutil.copy(assets.checkpoint_path, work / "models" / "checkpoints" / assets.checkpoint_name)
    return assets.checkpoint_name


def run(nprocs: int, wf: Path, work: Path, threads: int) -> tuple[int, float]:
    from kiln.devtools.fixtures import torchrun_cli_run
    proc = torchrun_cli_run(nprocs, wf, work, threads)
    found = TRAINED.findall(proc.stderr + proc.stdout)
    if proc.returncode != 0 or not found:
        sys.exit(f"torchrun with {nprocs} processes failed:\n{proc.stderr[-4000:]}")
    steps, seconds = found[-1]
    return int(steps), float(seconds)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nprocs", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--batch", type=int, default=2, help="per-rank batch")
    ap.add_argument("--rounds", type=int, default=1, help="rounds (alternating N); medians are printed")
    ap.add_argument("--threads", type=int, default=0,
                    help="CPU threads per rank (default: cores / N, so N ranks share the machine as 1 process does)")
    args = ap.parse_args()
    import torch
    gpus = torch.cuda.device_count()
    cores = os.cpu_count() or 1
    work = Path(tempfile.mkdtemp(prefix="kiln-bench-ddp-"))
    try:
        ckpt = prepare(work)
        from kiln.devtools.fixtures import tiny_train_prompt
        seconds: dict[int, list[float]] = {n: [] for n in args.nprocs}
        for r in range(args.rounds):
            for n in args.nprocs:
                if gpus and n > gpus:
                    sys.exit(f"{n} processes need {n} GPUs; this machine has {gpus}")
                wf = work / f"ddp{n}.json"
                wf.write_text(json.dumps(tiny_train_prompt(ckpt, "kiln_demo_dataset", f"bench_ddp{n}", steps=args.steps,
                                                           batch=args.batch)))
                steps, s = run(n, wf, work, args.threads or (1 if gpus else max(1, cores // n)))
                seconds[n].append(s)
                print(f"round {r + 1}: {n} process(es): {steps} steps in {s:.2f} s", flush=True)
        device = f"{gpus} GPU(s), NCCL" if gpus else f"CPU ({cores} cores), gloo"
        if args.threads:
            device += f", {args.threads} thread(s) per rank"
        print(f"\n{device}; per-rank batch {args.batch}, {args.steps} steps, medians of {args.rounds}")
        print(f"{'procs':>5} {'steps/s':>9} {'samples/s':>10} {'efficiency':>10}")
        base = None
        for n in args.nprocs:
            s = statistics.median(seconds[n])
            sps = args.steps / s
            samples = sps * args.batch * n
            base = base if base is not None else samples / n
            print(f"{n:>5} {sps:>9.3f} {samples:>10.3f} {samples / (n * base):>10.2f}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
