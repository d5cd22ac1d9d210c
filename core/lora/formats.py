"""Reading every common LoRA key layout into kohya names (writing is always kohya).

Handled: kohya / LyCORIS (``lora_unet_*``/``lora_te*_`` with ``lora_up``/``hada_``/``lokr_``/``diff``/
``dora_scale``), ComfyUI-native (``diffusion_model.<path>.lora_up.weight``, ``.diff``, ``.diff_b``,
``text_encoders.<path>``), and diffusers/PEFT (``unet.<path>.lora_A.weight``/``lora_B``, ``.lora.down``,
``_lora.down``, ``text_encoder(_2).<path>``). Diffusers module paths keep their diffusers names
(``lora_unet_down_blocks_0_...``), which is what kohya writes for SD-family models.
"""
from __future__ import annotations

import re

import torch

from .names import KOHYA_PREFIXES, LoraFormatError, kohya_name  # noqa: F401  (re-exported)
from .transformer_layouts import to_host_layout
from .value import KilnLora, module_groups

# suffix in the source -> kohya suffix
_SUFFIXES = [
    (".lora_A.default.weight", ".lora_down.weight"), (".lora_B.default.weight", ".lora_up.weight"),
    (".lora_A.weight", ".lora_down.weight"), (".lora_B.weight", ".lora_up.weight"),
    (".lora.down.weight", ".lora_down.weight"), (".lora.up.weight", ".lora_up.weight"),
    ("_lora.down.weight", ".lora_down.weight"), ("_lora.up.weight", ".lora_up.weight"),
    (".lora_down.weight", ".lora_down.weight"), (".lora_up.weight", ".lora_up.weight"),
    (".lora_mid.weight", ".lora_mid.weight"), (".alpha", ".alpha"), (".dora_scale", ".dora_scale"),
    (".diff_b", ".diff_b"), (".diff", ".diff"),
]
_LYCORIS = re.compile(r"\.(hada_w[12]_[ab]|hada_t[12]|lokr_w[12](_[ab])?|lokr_t[12]|diff|diff_b|dora_scale|alpha|"
                      r"lora_up\.weight|lora_down\.weight|lora_mid\.weight)$")


def _module_prefix(path: str, two_encoders: bool = False) -> str | None:
    """Module path in another layout -> kohya module name (None when unrecognised). two_encoders: the file
    holds SDXL's second text encoder, so the first one is kohya's ``lora_te1_`` rather than ``lora_te_``."""
    for strip in ("base_model.model.", "transformer."):
        if path.startswith(strip + "unet.") or path.startswith(strip + "text_encoder"):
            path = path[len(strip):]
    if path.startswith("diffusion_model."):
        return kohya_name("lora_unet_", path[len("diffusion_model."):])
    if path.startswith("unet."):
        return kohya_name("lora_unet_", path[len("unet."):].replace(".processor.", "."))
    if path.startswith("text_encoder_2."):
        return kohya_name("lora_te2_", path[len("text_encoder_2."):])
    if path.startswith("text_encoder."):
        return kohya_name("lora_te1_" if two_encoders else "lora_te_", path[len("text_encoder."):])
    if path.startswith("text_encoders."):
        rest = path[len("text_encoders."):]
        enc, _, rest = rest.partition(".")
        rest = rest[len("transformer."):] if rest.startswith("transformer.") else rest
        prefix = {"clip_l": "lora_te1_" if two_encoders else "lora_te_", "clip_g": "lora_te2_"}.get(enc, "lora_te_")
        return kohya_name(prefix, rest)
    if path.startswith("transformer."):
        # ai-toolkit / diffusers / SimpleTuner transformer LoRAs: the module path under the diffusion
        # model. For Qwen-Image and HiDream the host's module names are these names, so LoraLoader's
        # kohya names (lora_unet_<path>) apply them; Flux/Chroma/FLUX.2, SD3, Wan and Z-Image files were
        # converted to the host's layout before (transformer_layouts); what is left the fit check names.
        return kohya_name("lora_unet_", path[len("transformer."):])
    return None


def detect_format(tensors) -> str:
    keys = list(tensors)
    if all(k.startswith(KOHYA_PREFIXES) for k in keys):
        return "lycoris" if any(".hada_" in k or ".lokr_" in k or k.endswith(".diff") for k in keys) else "kohya"
    if any(k.startswith("diffusion_model.") or k.startswith("text_encoders.") for k in keys):
        return "comfyui"
    if any(".lora_A." in k or ".lora_B." in k or ".lora.down." in k or "_lora.down." in k for k in keys):
        return "diffusers"
    return "unknown"


def to_kohya(lora: KilnLora) -> KilnLora:
    """The same LoRA with kohya key names. Unrecognised keys are a clear error naming them."""
    # diffusers transformer layouts that differ from the host's (Flux, FLUX.2, SD3, Wan, Z-Image) first.
    out, tensors = to_host_layout(lora.tensors, lora.metadata)
    unknown = []
    two = any(k.startswith(("text_encoder_2.", "text_encoders.clip_g.")) for k in tensors)
    for key, t in tensors.items():
        if key.startswith(KOHYA_PREFIXES):
            out[key] = t
            continue
        for src, dst in _SUFFIXES:
            if key.endswith(src):
                module = _module_prefix(key[: -len(src)], two)
                if module is not None:
                    out[module + dst] = t
                    break
        else:
            m = _LYCORIS.search(key)
            module = _module_prefix(key[: m.start()], two) if m else None
            if module is None:
                unknown.append(key)
            else:
                out[module + key[m.start():]] = t
    if unknown:
        raise LoraFormatError(f"{len(unknown)} keys are in no LoRA layout Kiln reads (first: {unknown[0]!r}); "
                              "supported: kohya, LyCORIS, ComfyUI-native, diffusers/PEFT.")
    # PEFT files carry no alpha (it lives in their config): alpha = rank keeps their scale of 1.
    for module, parts in module_groups(out).items():
        if "lora_down.weight" in parts and "alpha" not in parts:
            out[f"{module}.alpha"] = torch.tensor(float(parts["lora_down.weight"].shape[0]))
    return KilnLora(out, lora.metadata)

