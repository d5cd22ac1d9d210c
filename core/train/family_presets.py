"""Per-family presets: the settings that make a good first LoRA on a model family in one choice.

A preset fills only what the user left at Kiln's defaults (a value the user set is kept). Values follow what
the 2026 trainers ship for each family:
- ai-toolkit config/examples/train_lora_<family>_24gb.yaml (linear / linear_alpha / lr / steps / timestep_type):
  Flux.1 dev and schnell, Chroma, Qwen-Image, SD3.5, Lumina2 rank 16 alpha 16, lr 1e-4, 2000 steps; HiDream
  rank 32 alpha 32, lr 2e-4, 3000 steps; Wan 2.1 rank 32 alpha 32, lr 1e-4, 2000 steps, sigmoid; its UI's
  Z-Image Turbo job rank 32 alpha 32, lr 1e-4, 3000 steps.
- musubi-tuner docs (zimage.md, flux_2.md, wan.md, qwen_image.md): Z-Image and FLUX.2 network_dim 32,
  learning_rate 1e-4; Wan dim 32; Qwen-Image dim 16; "shift" timestep sampling with the family's
  discrete_flow_shift (Z-Image 2.0, Qwen-Image 2.2, Wan 3.0).
- kohya sd-scripts' guides for SD1.x/SD2.x/SDXL: dim 32 alpha 16, unet lr 1e-4 (Kiln's own defaults); SD3
  logit_normal (sd-scripts' weighting_scheme); Flux sigmoid (--timestep_sampling sigmoid).

Shift: Kiln has no shift setting. Its "uniform" sampling goes through the host's model_sampling, which applies
each flow family's own shift (host.families), i.e. the trainers' "shift" sampling with the family's value.
So "shift" families get "uniform" here.
"""
from __future__ import annotations

from dataclasses import dataclass, fields, replace

from ..net.spec import NetworkSpec
from .loop import TrainConfig
from .optim import OptimizerSpec

AUTO = "auto (family default)"
NONE = "none"
PRESETS = (NONE, AUTO)


@dataclass(frozen=True)
class FamilyPreset:
    rank: int
    alpha: float
    lr: float
    steps: int                 # max_steps, filled only where the user left both epochs and max_steps as they were
    timestep_sampling: str     # a core.train.objective TIMESTEP_SAMPLINGS entry
    source: str                # where the values come from (shown in the log and docs/distilled.md)
    checkpointing: bool = False  # gradient checkpointing on (video families: a clip's activations are frames x larger)


_KOHYA = "kohya sd-scripts guides"
_AITK = "ai-toolkit example config"
_LTX = "Lightricks ltx-trainer configs (lr 1e-4, alpha = rank, shifted_logit_normal)"
FAMILY_PRESETS: dict[str, FamilyPreset] = {
    "sd1": FamilyPreset(32, 16.0, 1e-4, 1500, "uniform", _KOHYA),
    "sd2": FamilyPreset(32, 16.0, 1e-4, 1500, "uniform", _KOHYA),
    "sdxl": FamilyPreset(32, 16.0, 1e-4, 2000, "uniform", _KOHYA),
    "sd3": FamilyPreset(16, 16.0, 1e-4, 2000, "logit_normal", _AITK + " (sd35_large); sd-scripts logit_normal"),
    "flux1-dev": FamilyPreset(16, 16.0, 1e-4, 2000, "sigmoid", _AITK + " (flux); kohya sigmoid"),
    "flux1-schnell": FamilyPreset(16, 16.0, 1e-4, 2000, "sigmoid", _AITK + " (flux_schnell, with its adapter)"),
    "chroma": FamilyPreset(16, 16.0, 1e-4, 2000, "sigmoid", _AITK + " (chroma)"),
    "flux2": FamilyPreset(32, 32.0, 1e-4, 2000, "sigmoid", "musubi-tuner flux_2 (dim 32, lr 1e-4)"),
    "qwen-image": FamilyPreset(16, 16.0, 1e-4, 2000, "uniform", _AITK + " (qwen_image); musubi shift 2.2"),
    "z-image": FamilyPreset(32, 32.0, 1e-4, 3000, "uniform", "ai-toolkit Z-Image Turbo job; musubi shift 2.0"),
    "wan": FamilyPreset(32, 32.0, 1e-4, 2000, "sigmoid", _AITK + " (wan21_14b)", checkpointing=True),
    "lumina2": FamilyPreset(16, 16.0, 1e-4, 2000, "uniform", _AITK + " (lumina, lumina2_shift)"),
    "hidream": FamilyPreset(32, 32.0, 2e-4, 3000, "uniform", _AITK + " (hidream, shift)"),
    # Video families. ltx-trainer (Lightricks' LTX-2 trainer) configs: lr 1e-4, alpha = rank, shifted_logit_normal
    # sampling (the host's shift carries the "shifted" part). musubi-tuner hunyuan_video_1_5.md: network_dim 32,
    # lr 1e-4, --timestep_sampling flux_shift (uniform through the shifted schedule, as "shift" families here).
    # Both trainers turn gradient checkpointing on (enable_gradient_checkpointing: true; --gradient_checkpointing).
    "ltxv": FamilyPreset(32, 32.0, 1e-4, 2000, "logit_normal", _LTX, checkpointing=True),
    "ltx2": FamilyPreset(32, 32.0, 1e-4, 2000, "logit_normal", _LTX, checkpointing=True),
    "hunyuan-video-1.5": FamilyPreset(32, 32.0, 1e-4, 2000, "uniform",
                                      "musubi-tuner hunyuan_video_1_5 (dim 32, lr 1e-4, flux_shift)", checkpointing=True),
}


def _default(config, name):
    return {f.name: f.default for f in fields(config)}[name]


def _fill(obj, values: dict, filled: list):
    """``obj`` with each value of ``values`` set where obj still holds its class default."""
    keep = {k: v for k, v in values.items() if getattr(obj, k) == _default(type(obj), k)}
    filled.extend(f"{k}={v}" for k, v in keep.items() if getattr(obj, k) != v)
    return replace(obj, **keep) if keep else obj


def apply_family_preset(preset: str, family: str, net: NetworkSpec, opt: OptimizerSpec,
                        cfg: TrainConfig) -> tuple[NetworkSpec, OptimizerSpec, TrainConfig, str]:
    """The settings with the family's preset filled in where left at their defaults, and a line saying what
    was set ("" when nothing). An unknown family keeps every setting (and says so)."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {list(PRESETS)}")
    if preset == NONE:
        return net, opt, cfg, ""
    p = FAMILY_PRESETS.get(family)
    if p is None:
        return net, opt, cfg, f"no preset for the model family {family!r}; the settings stay as set"
    filled: list[str] = []
    net = _fill(net, {"rank": p.rank, "alpha": p.alpha}, filled)
    opt = _fill(opt, {"lr": p.lr}, filled)
    objective = _fill(cfg.objective, {"timestep_sampling": p.timestep_sampling}, filled)
    steps = {"max_steps": p.steps} if cfg.epochs == _default(TrainConfig, "epochs") else {}
    if p.checkpointing:
        steps["gradient_checkpointing"] = True
    cfg = _fill(replace(cfg, objective=objective), steps, filled)
    what = ", ".join(filled) if filled else "nothing (every value was set)"
    return net, opt, cfg, f"{family} preset ({p.source}) set {what}"


def check_table(table=FAMILY_PRESETS) -> None:
    """Every preset's values within the fields' own limits (the tests call it)."""
    from .objective import TIMESTEP_SAMPLINGS
    for family, p in table.items():
        if p.timestep_sampling not in TIMESTEP_SAMPLINGS:
            raise ValueError(f"{family}: unknown timestep sampling {p.timestep_sampling!r}")
        for config, name, value in ((NetworkSpec, "rank", p.rank), (OptimizerSpec, "lr", p.lr),
                                    (TrainConfig, "max_steps", p.steps)):
            meta = {f.name: f.metadata for f in fields(config)}[name]
            if not meta.get("min", value) <= value <= meta.get("max", value):
                raise ValueError(f"{family}: {name}={value} outside the field's limits")

