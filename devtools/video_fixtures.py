"""Tiny video VAEs built with the host's own classes (random weights, fixed seeds, every norm scale one), written as
files the host's VAELoader reads and detects: LTX-Video / LTX-2's causal video VAE (8x temporal, 32x spatial, 128
channels), HunyuanVideo 1.5's (4x temporal, 16x spatial, 32 channels) and Wan 2.2 5B's (4x temporal, 16x spatial,
48 channels). With the tiny diffusion models of devtools.family_fixtures they train those families on clips.

How the host builds each (comfy/sd.py, VAE.__init__), and so how a tiny one is made:
  * LTX: ``VideoVAE(version, config)`` with the config the file's "config" metadata gives ({"vae": {...}}), as the
    real LTX-2 files carry it: a tiny config (base width 16, one residual layer, three 2x2x2 compressions after the
    4x4 patch) goes in that metadata and VAELoader builds exactly it.
  * HunyuanVideo 1.5 (``hunyuan_video.vae_refiner`` Encoder/Decoder) and Wan 2.2 (``wan.vae2_2.WanVAE``): the host
    fixes their widths in code (1.26B and ~0.7B parameters), so ``tiny_video_vae_widths`` shrinks the widths of
    those two classes (and HunyuanVideo 1.5's residual blocks per stage) while a VAE is built, and the 2025-10
    host's Wan 2.1 VAE (whose width it fixes at 96; the 2026 host reads it from the file); detection, the VAE's ratios, its latent format and its encode/decode are
    the host's own. Load them with ``load_video_vae``, which wraps VAELoader in that context.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import torch

from .family_fixtures import FAMILY_FIXTURE_VERSION, _init_tiny, _meta, _write

# LTX-2's VAE layout (version 2 in the host: residual space-to-depth compressions in the encoder, compress_all in the
# decoder) at base width 16: 4x4 patches then three 2x2x2 compressions give 32x spatial and 8x temporal.
TINY_LTX_VAE_CONFIG = {
    "_class_name": "CausalVideoAutoencoder", "dims": 3, "in_channels": 3, "out_channels": 3, "latent_channels": 128,
    "encoder_blocks": [["res_x", {"num_layers": 1}]] + [["compress_all_res", {"multiplier": 2}]] * 3,
    "decoder_blocks": [["compress_all", {"residual": True, "multiplier": 2}]] * 3
                      + [["res_x", {"num_layers": 1, "inject_noise": False}]],
    "encoder_base_channels": 16, "decoder_base_channels": 16, "scaling_factor": 1.0, "norm_layer": "pixel_norm",
    "patch_size": 4, "latent_log_var": "uniform", "use_quant_conv": False, "causal_decoder": False,
    # no decode-time noise: a decode is a function of the latent, so samples compare exactly
    "timestep_conditioning": False}
# HunyuanVideo 1.5: five stages (16x spatial, 4x temporal), one residual block each; the last width is a multiple of
# 2 x 32 latent channels (the encoder's skip path groups channels by it).
HUNYUAN15_VAE = {"block_out_channels": [8, 16, 16, 32, 64], "num_res_blocks": 1}
WAN22_VAE_WIDTHS = {"dim": 8, "dec_dim": 16}


@dataclass(frozen=True)
class VideoVae:
    file: str             # as VAELoader lists it
    temporal: int         # frames per latent frame
    spatial: int          # pixels per latent cell
    channels: int         # latent channels
    module: str           # the host module whose class it is (availability)


VIDEO_VAES = {
    "ltx": VideoVae("kiln-tiny-ltx-vae.safetensors", 8, 32, 128, "comfy.ldm.lightricks.vae.causal_video_autoencoder"),
    "hunyuan-video-1.5": VideoVae("kiln-tiny-hunyuan15-vae.safetensors", 4, 16, 32,
                                  "comfy.ldm.hunyuan_video.vae_refiner"),
    "wan2.2": VideoVae("kiln-tiny-wan22-vae.safetensors", 4, 16, 48, "comfy.ldm.wan.vae2_2"),
    # devtools.family_fixtures.ensure_wan_vae's file (dim 8), which the 2026 host reads its width from
    "wan2.1": VideoVae("kiln-tiny-wan21-vae.safetensors", 4, 8, 16, "comfy.ldm.wan.vae"),
}
WAN21_VAE_DIM = 8


def video_vae_available(kind: str) -> str | None:
    """None where this host has the VAE's class, else the reason."""
    import importlib
    import inspect
    import nodes
    try:
        importlib.import_module(VIDEO_VAES[kind].module)
    except ImportError:
        return f"this ComfyUI has no {VIDEO_VAES[kind].module} (the {kind} video VAE)"
    if kind == "ltx" and "metadata" not in inspect.getsource(nodes.VAELoader.load_vae):
        return ("this ComfyUI's VAELoader reads no file metadata, so it builds LTX's VAE from its full-size default "
                "config (no tiny one can load)")
    return None


@contextlib.contextmanager
def tiny_video_vae_widths():
    """While a VAE is built: the host's HunyuanVideo 1.5 and Wan 2.2 VAE classes at the tiny widths above (the host
    fixes their full widths in comfy.sd), and Wan 2.1's at dim 8 (the 2025-10 host fixes 96; the 2026 host reads it
    from the file, which says 8); every other VAE is built as the host builds it."""
    import importlib
    import comfy.sd
    import comfy.ldm.wan.vae as wan21
    try:
        wan22 = importlib.import_module("comfy.ldm.wan.vae2_2")
    except ImportError:     # a host without Wan 2.2's VAE: nothing of it to shrink
        wan22 = None
    real_engine, real_wan, real_wan21 = comfy.sd.AutoencodingEngine, getattr(wan22, "WanVAE", None), wan21.WanVAE

    def engine(*args, encoder_config, decoder_config, **kwargs):
        if encoder_config.get("target", "").startswith("comfy.ldm.hunyuan_video.vae_refiner."):
            encoder_config, decoder_config = (
                dict(c, params=dict(c["params"], **HUNYUAN15_VAE))
                for c in (encoder_config, decoder_config))
        return real_engine(*args, encoder_config=encoder_config, decoder_config=decoder_config, **kwargs)

    def wan(**kwargs):
        return real_wan(**dict(kwargs, **WAN22_VAE_WIDTHS))

    def wan_21(**kwargs):
        return real_wan21(**dict(kwargs, dim=WAN21_VAE_DIM))
    comfy.sd.AutoencodingEngine, wan21.WanVAE = engine, wan_21
    if wan22 is not None:
        wan22.WanVAE = wan
    try:
        yield
    finally:
        comfy.sd.AutoencodingEngine, wan21.WanVAE = real_engine, real_wan21
        if wan22 is not None:
            wan22.WanVAE = real_wan


def _build(kind: str, seed: int) -> tuple[dict, dict]:
    """(state dict, file metadata) of the tiny VAE, built with the host's class."""
    if kind == "ltx":
        from comfy.ldm.lightricks.vae.causal_video_autoencoder import VideoVAE
        model = VideoVAE(config=TINY_LTX_VAE_CONFIG)
        _init_tiny(model, seed)
        stats = model.per_channel_statistics
        with torch.no_grad():   # latents as encoded (the host normalizes by these)
            stats.get_buffer("std-of-means").fill_(1.0)
            stats.get_buffer("mean-of-means").fill_(0.0)
        return model.state_dict(), {"config": json.dumps({"vae": TINY_LTX_VAE_CONFIG})}
    if kind == "hunyuan-video-1.5":
        from comfy.ldm.models.autoencoder import AutoencodingEngine
        params = {"in_channels": 3, "out_channels": 3, "ffactor_spatial": 16, "ffactor_temporal": 4,
                  "downsample_match_channel": True, "upsample_match_channel": True, "z_channels": 32, **HUNYUAN15_VAE}
        model = AutoencodingEngine(
            regularizer_config={"target": "comfy.ldm.models.autoencoder.EmptyRegularizer"},
            encoder_config={"target": "comfy.ldm.hunyuan_video.vae_refiner.Encoder", "params": params},
            decoder_config={"target": "comfy.ldm.hunyuan_video.vae_refiner.Decoder", "params": params})
    else:
        from comfy.ldm.wan.vae2_2 import WanVAE
        model = WanVAE(z_dim=48, dim_mult=[1, 2, 4, 4], num_res_blocks=2, attn_scales=[],
                       temperal_downsample=[False, True, True], **WAN22_VAE_WIDTHS)
    _init_tiny(model, seed)
    return model.state_dict(), {}


def ensure_video_vae(kind: str, cache_dir: str | Path) -> str:
    """Write (once per host and fixture version) the tiny ``kind`` VAE (a VIDEO_VAES key) into a folder VAELoader
    lists; returns its name there."""
    import folder_paths
    from ..host import COMFYUI_ROOT
    if kind == "wan2.1":
        from .family_fixtures import ensure_wan_vae
        return ensure_wan_vae(cache_dir)
    host_id = hashlib.sha256(str(Path(COMFYUI_ROOT).resolve()).encode()).hexdigest()[:8]
    folder = Path(cache_dir) / f"video-vae-{host_id}"
    spec = VIDEO_VAES[kind]
    path = folder / spec.file
    stamp = hashlib.sha256(f"{FAMILY_FIXTURE_VERSION}|{kind}|{TINY_LTX_VAE_CONFIG!r}|{HUNYUAN15_VAE!r}|"
                           f"{WAN22_VAE_WIDTHS!r}".encode()).hexdigest()[:16]
    if not path.is_file() or _meta(path).get("kiln_fixture") != stamp:
        sd, meta = _build(kind, seed=11)
        _write(path, sd, {"kiln_fixture": stamp, **meta})
    folder_paths.add_model_folder_path("vae", str(folder), is_default=True)
    return spec.file


def load_video_vae(kind: str, cache_dir: str | Path):
    """The tiny ``kind`` VAE through the host's VAELoader (inside ``tiny_video_vae_widths``)."""
    import nodes
    name = ensure_video_vae(kind, cache_dir)
    with tiny_video_vae_widths(), torch.inference_mode():
        return nodes.VAELoader().load_vae(name)[0]
