"""Tiny models built with the host's own classes (random weights, fixed seeds) and a tiny image set.

Nothing is downloaded: tests and the demo write a small SD1.5-family checkpoint that the host's
CheckpointLoaderSimple loads and detects as SD1.5 (it matches on model_channels=320 and context_dim=768;
depth and levels are free), plus a ``5_kiln shapes`` folder of coloured shapes with captions.
"""
from __future__ import annotations

import json
import math
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image, ImageDraw

from . import COMFYUI_ROOT  # noqa: F401  (importing the package boots the host)
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
