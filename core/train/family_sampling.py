"""Each model family's own settings for the training-time samples, used where the user left Kiln Sample
Prompts at its generic SD-style defaults (cfg 7, 20 steps, the "normal" scheduler): a Flux-dev sample at
cfg 7 without its distilled guidance shows nothing of what the LoRA will look like in a Flux workflow.

Values are the ones the families' ComfyUI example workflows use. The noise schedule's shift needs nothing
here: the host's model_sampling carries each family's shift into sampling as into training."""
from __future__ import annotations

from dataclasses import dataclass, replace

from .sample_prompts import SamplePrompt
from .specs import SampleSpec


@dataclass(frozen=True)
class FamilySampling:
    cfg: float
    steps: int | None = None          # None: the prompt's own steps
    guidance: float | None = None     # distilled guidance the model reads (FluxGuidance's value)
    scheduler: str = "simple"


FAMILY_SAMPLING = {
    "flux1-dev": FamilySampling(cfg=1.0, guidance=3.5),
    "flux1-schnell": FamilySampling(cfg=1.0, steps=4),
    "flux2": FamilySampling(cfg=1.0, guidance=4.0),
    "chroma": FamilySampling(cfg=4.0),
    "sd3": FamilySampling(cfg=4.5, scheduler="sgm_uniform"),
    "qwen-image": FamilySampling(cfg=2.5),
    "z-image": FamilySampling(cfg=1.0, steps=8),      # Z-Image Turbo (distilled)
    "wan": FamilySampling(cfg=5.0),
    "lumina2": FamilySampling(cfg=4.0),
    "hidream": FamilySampling(cfg=5.0),
    "ltxv": FamilySampling(cfg=4.0),                 # ltx-trainer's validation guidance_scale
    "ltx2": FamilySampling(cfg=4.0),
    "hunyuan-video-1.5": FamilySampling(cfg=6.0),    # musubi-tuner hv_1_5_generate_video --guidance_scale default
}

_DEFAULT_CFG = SamplePrompt.__dataclass_fields__["cfg"].default
_DEFAULT_STEPS = SamplePrompt.__dataclass_fields__["steps"].default
_DEFAULT_SCHEDULER = SampleSpec.__dataclass_fields__["scheduler"].default


def for_family(spec: SampleSpec, family: str) -> tuple[SampleSpec, float | None, str]:
    """(the spec with the family's cfg/steps/scheduler where the user kept the generic defaults, the
    guidance to set on the conditioning or None, a log line saying what was chosen or "")."""
    fam = FAMILY_SAMPLING.get(family)
    if fam is None:
        return spec, None, ""
    prompts = tuple(replace(p, cfg=fam.cfg if p.cfg == _DEFAULT_CFG else p.cfg,
                            steps=fam.steps if fam.steps and p.steps == _DEFAULT_STEPS else p.steps)
                    for p in spec.prompts)
    scheduler = fam.scheduler if spec.scheduler == _DEFAULT_SCHEDULER else spec.scheduler
    chosen = [f"cfg {fam.cfg:g} where a prompt kept cfg {_DEFAULT_CFG:g}"]
    if fam.steps:
        chosen.append(f"{fam.steps} steps where it kept {_DEFAULT_STEPS}")
    if scheduler != spec.scheduler:
        chosen.append(f"the {scheduler} scheduler")
    if fam.guidance is not None:
        chosen.append(f"guidance {fam.guidance:g}")
    note = f"samples use {family}'s own settings: {', '.join(chosen)} (set them on Kiln Sample Prompts to override)"
    return replace(spec, prompts=prompts, scheduler=scheduler), fam.guidance, note
