"""Tiny models built with the host's own classes (random weights, fixed seeds) and a tiny image set.

Nothing is downloaded: tests and the demo write a small SD1.5-family checkpoint that the host's
CheckpointLoaderSimple loads and detects as SD1.5 (it matches on model_channels=320 and context_dim=768;
depth and levels are free), plus a ``5_kiln shapes`` folder of coloured shapes with captions.
"""
from __future__ import annotations

import json
import math
import os
import shutil
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image, ImageDraw

from ..host import COMFYUI_ROOT  # noqa: F401  (importing the package boots the host)
from ..core.lora.io import atomic_write_bytes

CHECKPOINT_NAME = "kiln-tiny-sd15.safetensors"
DATASET_DIRNAME = "kiln_demo_dataset"
CONCEPT_DIRNAME = "5_kiln shapes"
FIXTURE_VERSION = "2"


def _seeded_init(module: torch.nn.Module, seed: int) -> None:
    """Host layers skip their own init (they expect to load weights), so give every tensor a value:
    norms start as identity, matrices as N(0, 1/fan_in), biases at zero."""
    gen = torch.Generator().manual_seed(seed)
    norms = (torch.nn.GroupNorm, torch.nn.LayerNorm, torch.nn.BatchNorm2d)
    with torch.no_grad():
        for sub in module.modules():
            for leaf, p in sub.named_parameters(recurse=False):
                if isinstance(sub, norms):
                    p.fill_(1.0 if leaf == "weight" else 0.0)
                elif p.dim() >= 2:
                    p.copy_(torch.randn(p.shape, generator=gen) / math.sqrt(p[0].numel()))
                else:
                    p.zero_()


def tiny_unet_state_dict(seed: int = 0) -> dict[str, torch.Tensor]:
    """One level, one res block, one transformer block: ~19M parameters, SD1.5 widths."""
    from comfy.ldm.modules.diffusionmodules.openaimodel import UNetModel
    import comfy.ops
    unet = UNetModel(
        image_size=32, in_channels=4, out_channels=4, model_channels=320, num_res_blocks=[1],
        channel_mult=(1,), transformer_depth=[1], transformer_depth_output=[1, 1],
        transformer_depth_middle=1, context_dim=768, num_heads=8, use_spatial_transformer=True,
        use_linear_in_transformer=False, legacy=False, operations=comfy.ops.disable_weight_init)
    _seeded_init(unet, seed)
    with torch.no_grad():
        # Scale the output conv down so the random network predicts noise of a sane magnitude.
        unet.out[-1].weight.mul_(0.1)
    return {f"model.diffusion_model.{k}": v for k, v in unet.state_dict().items()}


def tiny_vae_state_dict(seed: int = 1) -> dict[str, torch.Tensor]:
    """The host's TAESD layout (``first_stage_model.taesd_*``), ~2.5M parameters."""
    from comfy.taesd.taesd import TAESD
    vae = TAESD()
    _seeded_init(vae, seed)
    with torch.no_grad():
        vae.vae_scale.fill_(1.0)
        vae.vae_shift.fill_(0.0)
    return {f"first_stage_model.{k}": v for k, v in vae.state_dict().items()}


def clip_l_state_dict(seed: int = 2) -> dict[str, torch.Tensor]:
    """A complete CLIP-L text encoder (~124M parameters): the host leaves missing layers uninitialised."""
    from comfy.clip_model import CLIPTextModel
    cfg_path = COMFYUI_ROOT / "comfy" / "sd1_clip_config.json"
    cfg = json.loads(cfg_path.read_text())
    clip = CLIPTextModel(cfg, dtype=torch.float32, device="cpu", operations=torch.nn)
    _seeded_init(clip, seed)
    sd = {f"cond_stage_model.transformer.{k}": v for k, v in clip.state_dict().items()
          if not k.startswith("text_projection")}
    sd["cond_stage_model.transformer.text_model.embeddings.position_ids"] = torch.arange(77).unsqueeze(0)
    return sd


def write_tiny_checkpoint(path: Path, seed: int = 0) -> Path:
    from safetensors.torch import save
    sd = {}
    sd.update(tiny_unet_state_dict(seed))
    sd.update(tiny_vae_state_dict(seed + 1))
    sd.update(clip_l_state_dict(seed + 2))
    # fp16 halves the file; the host upcasts on load where the device needs it.
    sd = {k: (v.half() if v.is_floating_point() else v).contiguous() for k, v in sd.items()}
    return atomic_write_bytes(path, save(sd, {"kiln_fixture": FIXTURE_VERSION, "kiln_seed": str(seed)}))


SHAPES = [
    ("red", (220, 40, 40), "circle"), ("blue", (40, 70, 220), "square"), ("green", (40, 180, 60), "triangle"),
    ("yellow", (230, 210, 40), "circle"), ("purple", (140, 50, 180), "square"), ("orange", (240, 140, 30), "triangle"),
    ("red", (220, 40, 40), "square"), ("blue", (40, 70, 220), "triangle"), ("green", (40, 180, 60), "circle"),
    ("yellow", (230, 210, 40), "square"),
]


def write_shapes_dataset(root: Path, size: int = 64) -> Path:
    """``root/5_kiln shapes``: 10 small PNGs of coloured shapes, each with a ``.txt`` caption."""
    folder = root / CONCEPT_DIRNAME
    folder.mkdir(parents=True, exist_ok=True)
    for i, (colour, rgb, shape) in enumerate(SHAPES):
        img = Image.new("RGB", (size, size), (245, 245, 240))
        d = ImageDraw.Draw(img)
        m = size // 6 + (i % 3) * 2
        box = (m, m, size - m, size - m)
        if shape == "circle":
            d.ellipse(box, fill=rgb)
        elif shape == "square":
            d.rectangle(box, fill=rgb)
        else:
            d.polygon([(size // 2, m), (size - m, size - m), (m, size - m)], fill=rgb)
        img.save(folder / f"shape_{i:02d}.png")
        (folder / f"shape_{i:02d}.txt").write_text(f"kiln shapes, {colour} {shape}, simple background")
    return root


@dataclass(frozen=True)
class DemoAssets:
    checkpoint_name: str      # as CheckpointLoaderSimple lists it
    checkpoint_path: Path
    dataset_dir: Path         # root holding the N_name folder
    dataset_input_name: str   # the same, relative to the host input directory


def ensure_demo_assets(cache_dir: str | Path) -> DemoAssets:
    """Write the tiny checkpoint once per cache dir and expose it and the image set to the host."""
    import folder_paths
    cache_dir = Path(cache_dir)
    ckpt_dir = cache_dir / "checkpoints"
    ckpt = ckpt_dir / CHECKPOINT_NAME
    stamp = ckpt_dir / (CHECKPOINT_NAME + ".version")
    if not ckpt.is_file() or not stamp.is_file() or stamp.read_text() != FIXTURE_VERSION:
        write_tiny_checkpoint(ckpt)
        stamp.write_text(FIXTURE_VERSION)
    folder_paths.add_model_folder_path("checkpoints", str(ckpt_dir), is_default=True)
    input_root = Path(folder_paths.get_input_directory())
    dataset_dir = input_root / DATASET_DIRNAME
    if dataset_dir.exists():
        shutil.rmtree(dataset_dir)
    write_shapes_dataset(dataset_dir)
    return DemoAssets(CHECKPOINT_NAME, ckpt, dataset_dir, DATASET_DIRNAME)


def tiny_train_prompt(checkpoint: str, dataset: str, name: str, *, steps: int, batch: int, rank: int = 8,
                      targets: str = "attn_mlp", lr: float = 5e-3, weight_decay: float = 0.01, seed: int = 0,
                      precision: str = "auto", save_dtype: str = "fp16", max_bucket_reso: int = 128,
                      overwrite: bool = True) -> dict:
    """An API-format graph: load ``checkpoint``, train a LoRA (alpha = rank) on ``dataset`` at 64 px for
    ``steps`` steps, save it as ``name``. What the data-parallel test and benchmark run under torchrun."""
    return {
        "ckpt": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": checkpoint}},
        "data": {"class_type": "KilnLoadDataset", "inputs": {
            "path": dataset, "resolution": 64, "caption_source": "files", "caption_extension": ".txt", "repeats": 1,
            "min_bucket_reso": 64, "max_bucket_reso": max_bucket_reso, "bucket_reso_steps": 64}},
        "net": {"class_type": "KilnNetworkConfig", "inputs": {
            "algorithm": "lora", "rank": rank, "alpha": float(rank), "conv_rank": 0, "conv_alpha": 1.0,
            "targets": targets, "train_unet": True, "train_text_encoder": False}},
        "opt": {"class_type": "KilnOptimizerConfig", "inputs": {
            "optimizer": "adamw", "learning_rate": lr, "text_encoder_lr": lr, "scheduler": "constant",
            "warmup_steps": 0, "warmup_ratio": 0.0, "weight_decay": weight_decay, "max_grad_norm": 1.0}},
        "train": {"class_type": "KilnTrainLora", "inputs": {
            "model": ["ckpt", 0], "clip": ["ckpt", 1], "vae": ["ckpt", 2], "dataset": ["data", 0], "network": ["net", 0],
            "optimizer": ["opt", 0], "output_name": name, "epochs": 1, "max_steps": steps, "batch_size": batch,
            "gradient_accumulation": 1, "seed": seed, "mixed_precision": precision, "gradient_checkpointing": False,
            "save_dtype": save_dtype}},
        "save": {"class_type": "KilnSaveLora", "inputs": {"lora": ["train", 2], "filename": name, "overwrite": overwrite}},
    }


def torchrun_cli_run(nprocs: int, workflow: Path, work_dir: Path, threads: int = 1,
                     timeout: float | None = None) -> subprocess.CompletedProcess:
    """``torchrun --nproc_per_node N -m cli run <workflow> --work-dir <work_dir>`` from the pack's folder, on a
    free local port, each rank with ``threads`` CPU threads; the finished process (output captured)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nprocs),
                           "--master_port", str(port), "-m", "kiln", "run", str(workflow), "--work-dir", str(work_dir)],
                          cwd=Path(__file__).resolve().parent.parent, env=env, capture_output=True, text=True,
                          timeout=timeout)
