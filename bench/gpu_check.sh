#!/usr/bin/env bash
# The GPU check: one command, under 8 minutes on one GPU, nothing downloaded. Random-weight SDXL, Flux.1 and
# Qwen-Image built from the host's own configs, first at tiny then at real width, bf16 and fp8 base weights,
# checkpointing off and on, batch 1, rank 16 on attention and MLP: steps/s and peak VRAM of Kiln's Train and
# of the host's TrainLoraNode, printed as one table (bench/bench_gpu.py --check). Rows that would start past
# the time budget print as skipped, so the command always ends in time.
#
#   COMFYUI_PATH=/path/to/ComfyUI bash bench/gpu_check.sh            # a GPU machine
#   COMFYUI_PATH=... bash bench/gpu_check.sh --tiny --steps 1         # anywhere: tiny widths only (the CPU test)
#
# PYTHON picks the interpreter (default: the repository's .venv, else python3); other arguments go to
# bench_gpu.py (--families, --bases, --steps, --rank, --budget-s).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(dirname "$here")"
if [[ -z "${PYTHON:-}" ]]; then
  if [[ -x "$repo/.venv/bin/python" ]]; then PYTHON="$repo/.venv/bin/python"; else PYTHON=python3; fi
fi
"$PYTHON" -c 'import torch; print("torch", torch.__version__, "cuda" if torch.cuda.is_available() else "cpu",
    torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")'
exec "$PYTHON" "$here/bench_gpu.py" --check --steps 3 --budget-s 400 "$@"
