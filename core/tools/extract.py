"""Extracting a LoRA from the difference of two models (A - B), with a randomized SVD per layer."""
from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from ..lora.names import kohya_name
from ..lora.metadata import FAMILY_OF_BASE_MODEL_VERSION, modelspec_metadata
from ..lora.unet_names import kohya_unet_names
from ..lora.value import KilnLora
from ..net.targets import wanted_weight
from .lowrank import randomized_svd
from .resize import LayerReport, factors_to_lora


@dataclass(frozen=True)
class ExtractSpec:
    method: str = "fixed"          # fixed | sv_fro (energy fraction of the whole delta) | sv_ratio
    value: float = 32
    max_rank: int = 128
    conv_rank: int = 0             # 3x3 convs: 0 skips them
    targets: str = "full"          # which layers (core.net.targets presets)
    clamp_quantile: float = 0.99   # clamp factor values at this quantile (1 = off), as kohya's extractor
    oversample: int = 16           # 16 / 6 keep >= 99% of the exact energy in every layer on fine-tune-like
    power_iters: int = 6           # spectra, several times faster than a full SVD (bench/bench_extract.py)
    min_diff: float = 1e-6         # layers whose relative change is smaller are skipped
    text_encoder: bool = True


def checkpoint_names(keys) -> dict[str, str]:
    """kohya module name -> state-dict key for a checkpoint file: the UNet with kohya's diffusers-style names
    (core.lora.unet_names), SD1.x's CLIP-L as ``lora_te_``, SDXL's CLIP-L as ``lora_te1_``. SDXL's OpenCLIP-G stores
    fused q/k/v projections under other names and is not extracted from a file (the node, which reads the
    host's CLIP, covers it)."""
    out = {}
    unet = [k[len("model.diffusion_model."):-len(".weight")] for k in keys
            if k.startswith("model.diffusion_model.") and k.endswith(".weight")]
    # kohya's diffusers-style names, the ones training writes (kohya, LyCORIS and diffusers read only these).
    for path, kohya in kohya_unet_names(unet).items():
        out[kohya] = f"model.diffusion_model.{path}.weight"
    for k in keys:
        if not k.endswith(".weight"):
            continue
        if k.startswith("model.diffusion_model."):
            continue
        elif k.startswith("cond_stage_model.transformer.text_model.encoder.layers."):
            out[kohya_name("lora_te_", k[len("cond_stage_model.transformer."):-len(".weight")])] = k
        elif k.startswith("conditioner.embedders.0.transformer.text_model.encoder.layers."):
            out[kohya_name("lora_te1_", k[len("conditioner.embedders.0.transformer."):-len(".weight")])] = k
    return out


def _rank_for(s: torch.Tensor, total_energy: float, spec: ExtractSpec, cap: int) -> int:
    if spec.method == "fixed":
        return max(1, min(int(spec.value), cap, len(s)))
    if spec.method == "sv_ratio":
        return max(1, min(int((s >= s[0] / spec.value).sum()), cap))
    if spec.method == "sv_fro":
        cum = torch.cumsum(s.double() ** 2, 0) / max(total_energy, 1e-30)
        return max(1, min(int((cum < spec.value - 1e-12).sum()) + 1, cap, len(s)))
    raise ValueError(f"unknown extract method {spec.method!r}; use fixed, sv_fro or sv_ratio")


def _clamp(up: torch.Tensor, down: torch.Tensor, q: float):
    if q >= 1.0:
        return up, down
    values = torch.cat([up.flatten(), down.flatten()]).abs()
    if values.numel() > 1_000_000:  # torch.quantile's input limit: a fixed-stride sample is enough
        values = values[:: values.numel() // 1_000_000 + 1]
    hi = float(torch.quantile(values.float(), q))
    return up.clamp(-hi, hi), down.clamp(-hi, hi)


def extract_lora(weights_a, weights_b, names: dict[str, str], spec: ExtractSpec, seed: int = 0,
                 host_names: dict[str, str] | None = None, progress=None, base_model_version: str = "",
                 title: str = "") -> tuple[KilnLora, list[LayerReport]]:
    """weights_*: name -> tensor (state dicts or lazy mappings); names: kohya module -> weight key;
    host_names (optional): kohya module -> the host module path used for target selection;
    base_model_version: kohya's name for model B's family (written with the modelspec.* keys)."""
    gen = torch.Generator().manual_seed(seed)
    out, report = {}, []
    for kohya, key in sorted(names.items()):
        if kohya.startswith("lora_te") and not spec.text_encoder:
            continue
        if key not in weights_a or key not in weights_b:
            continue
        a, b = weights_a[key], weights_b[key]
        if a.dim() not in (2, 4):          # norms and embeddings: not LoRA layers
            continue
        if a.shape != b.shape:
            raise ValueError(f"{kohya}: shapes differ ({tuple(a.shape)} vs {tuple(b.shape)}); the two models are "
                             "not the same architecture.")
        host_name = (host_names or {}).get(kohya, key[:-len(".weight")].replace("model.diffusion_model.", "diffusion_model."))
        if not (kohya.startswith("lora_te") or wanted_weight(host_name, tuple(a.shape), spec.targets, spec.conv_rank > 0)):
            continue
        delta = a.float() - b.float()
        shape = tuple(delta.shape)
        m = delta.reshape(shape[0], -1)
        total = float((m.double() ** 2).sum())
        if total <= (spec.min_diff ** 2) * float((b.float().double() ** 2).sum()):
            continue
        is_conv3 = len(shape) == 4 and shape[2:] != (1, 1)
        cap = spec.conv_rank if is_conv3 else spec.max_rank
        want = int(spec.value) if spec.method == "fixed" else cap
        k = min(want if not is_conv3 else min(want, spec.conv_rank), *m.shape)
        u, s, vh = randomized_svd(m, k, spec.oversample, spec.power_iters, gen)
        rank = _rank_for(s, total, spec, min(cap, k))
        parts = factors_to_lora(u, s, vh, shape, rank)
        up, down = _clamp(parts["lora_up.weight"], parts["lora_down.weight"], spec.clamp_quantile)
        out[f"{kohya}.lora_up.weight"], out[f"{kohya}.lora_down.weight"] = up, down
        out[f"{kohya}.alpha"] = parts["alpha"]
        report.append(LayerReport(kohya, "lora", min(m.shape), rank, float((s[:rank].double() ** 2).sum()) / total))
        if progress:
            progress()
    if not out:
        raise ValueError("The two models do not differ in any targeted layer (or are the same model).")
    ranks = [r.new_rank for r in report]
    meta = {"ss_network_module": "networks.lora", "ss_network_dim": str(max(ranks)),
            "ss_network_alpha": str(float(max(ranks))), "kiln_extract": f"{spec.method}:{spec.value}"}
    if base_model_version:
        # kohya's tools, A1111 and model browsers tell the base model from these, and Kiln's merge checks it.
        now = time.time()
        meta.update(ss_base_model_version=base_model_version, ss_v2=str(base_model_version.startswith("sd_v2")),
                    ss_training_started_at=str(now), ss_output_name=title)
        meta.update(modelspec_metadata(FAMILY_OF_BASE_MODEL_VERSION.get(base_model_version, ""),
                                       title=title or "extracted LoRA", created_at=now))
    return KilnLora(out, meta), report


def base_model_version_of_checkpoint(keys) -> str:
    """kohya's ss_base_model_version of a checkpoint file, from its text-encoder keys: SDXL's two
    embedders, SD2's OpenCLIP, SD1's CLIP-L; "" when none of these is there."""
    keys = list(keys)
    if any(k.startswith("conditioner.embedders.1.") for k in keys):
        return "sdxl_base_v1-0"
    if any(k.startswith("cond_stage_model.model.") for k in keys):
        return "sd_v2"
    if any(k.startswith("cond_stage_model.transformer.") for k in keys):
        return "sd_v1"
    return ""
