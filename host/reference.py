"""Edit-model training through the host's own reference conditioning (Flux Kontext, Qwen-Image-Edit, FLUX.2).

The host's ``ReferenceLatent`` node (and TextEncodeQwenImageEditPlus) put the VAE latents of the "before" images on the
conditioning as ``reference_latents``; each edit family's ``extra_conds`` turns them into ``ref_latents``, and its
diffusion model appends their tokens to the noisy image's, attends over both and returns the image tokens only. Kiln
trains through exactly that path: a micro-batch's control latents (cached like the targets) are handed to the model's
``extra_conds`` as ``reference_latents``, so the loss sees the target tokens only and the saved LoRA samples with the
host's own edit nodes."""
from __future__ import annotations

import contextlib
import inspect
import logging

import torch

from .families import family_of
from .training import autograd_safe

log = logging.getLogger("kiln")

# Families whose host model reads reference latents the way their edit checkpoints were trained
# (family string of host.families -> the edit models of that family).
EDIT_FAMILIES = {"flux1-dev": "Flux Kontext", "qwen-image": "Qwen-Image-Edit (2509/2511)", "flux2": "FLUX.2"}
MAX_REFERENCES = 3


def edit_families_text() -> str:
    return ", ".join(EDIT_FAMILIES.values())


def check_controls(dataset, model, clip=None) -> bool:
    """True when this run trains with reference latents. Controls on a family that takes none are refused before
    any step; an edit family given plain images trains as text-to-image, and says so."""
    family = family_of(model)
    n = getattr(dataset, "controls_per_image", 0)
    if n and family not in EDIT_FAMILIES:
        raise ValueError(f"the dataset has control images (edit pairs), but the model is {family or 'unknown'}, which "
                         f"takes no reference images: controls train edit models only ({edit_families_text()}). "
                         "Load an edit model, or set the dataset's controls to none.")
    if n > MAX_REFERENCES:
        raise ValueError(f"{n} controls per image; {EDIT_FAMILIES.get(family, family)} trains with at most "
                         f"{MAX_REFERENCES}.")
    if not n and family in EDIT_FAMILIES:
        log.info("Kiln: no control images in the dataset: %s trains as plain text-to-image (for an edit LoRA, put "
                 "the 'before' images in a 'control' folder beside the images and set Load Dataset's controls to "
                 "auto, or connect control_images)", EDIT_FAMILIES[family])
    if n and family == "qwen-image":
        if text_sees_controls(clip, family):
            log.info("Kiln: Qwen-Image-Edit: the control images are reference latents and Qwen2.5-VL's vision tower "
                     "sees them with the instruction, as TextEncodeQwenImageEditPlus shows them (captions cached per "
                     "instruction and control images)")
        else:
            log.info("Kiln: Qwen-Image-Edit: the control images are reference latents; the text encoder reads the "
                     "instruction only (this CLIP is not the host's Qwen2.5-VL with its vision tower, which "
                     "TextEncodeQwenImageEditPlus also shows them to)")
    return bool(n)


def for_family(dataset, model):
    """``dataset`` with its control_resolution "family" resolved to the model's own reference size."""
    from ..core.data.controls import family_control_resolution
    setting = getattr(dataset.config, "control_resolution", "target")
    resolved = family_control_resolution(setting, family_of(model))
    if resolved != setting:
        log.info("Kiln: control_resolution family: %s", f"~{resolved} x {resolved} pixels" if resolved.isdigit()
                 else "the target's size (this family takes its references at the size given)")
    return dataset.with_control_resolution(resolved)


def _edit_plus_node():
    """The host's TextEncodeQwenImageEditPlus node class, or None where this host has none."""
    try:
        from comfy_extras.nodes_qwen import TextEncodeQwenImageEditPlus
    except ImportError:
        return None
    return TextEncodeQwenImageEditPlus


def text_sees_controls(clip, family: str | None) -> bool:
    """Whether Qwen-Image-Edit's instruction is encoded with its control images: the family is Qwen-Image, the host has
    TextEncodeQwenImageEditPlus, the CLIP's tokenizer takes images and its encoder has a vision tower (the host's
    Qwen2.5-VL, whose ``preprocess_embed`` runs ``visual`` on an image token's picture)."""
    if clip is None or family != "qwen-image" or _edit_plus_node() is None:
        return False
    tokenize = getattr(clip.tokenizer, "tokenize_with_weights", None)
    try:
        if tokenize is None or "images" not in inspect.signature(tokenize).parameters:
            return False
    except (TypeError, ValueError):
        return False
    return any(isinstance(getattr(m, "visual", None), torch.nn.Module) and hasattr(m, "preprocess_embed")
               for m in clip.cond_stage_model.children() for m in (m, *m.children()))


def encode_with_controls(clip, text: str, images: list[torch.Tensor]):
    """The conditioning TextEncodeQwenImageEditPlus gives for ``text`` with ``images`` ([1, H, W, 3] each, at most
    three) and no VAE: the host's own "Picture N:" prefix, vision-tower scaling, edit template and encoder. The
    reference latents are added by the caller (cached latents in training, ReferenceLatent in samples)."""
    if len(images) > MAX_REFERENCES:
        raise ValueError(f"{len(images)} control images; TextEncodeQwenImageEditPlus takes at most {MAX_REFERENCES}")
    return _edit_plus_node().execute(clip, text, None, *(image[..., :3] for image in images)).args[0]


class ControlText:
    """A Qwen-Image-Edit run's caption encoder: each instruction with its sample's control images (float [H, W, 3]
    pixels, cut like the target), as (cond, extras) pairs like HostDiffusionModel.encode_text gives."""

    def __init__(self, clip, train_text_encoder: bool):
        self.clip, self.train_text_encoder = clip, train_text_encoder

    def __call__(self, captions: list[str], controls: list[list[torch.Tensor]]) -> list:
        out = []
        with contextlib.nullcontext() if self.train_text_encoder else torch.no_grad():
            for text, pictures in zip(captions, controls):
                cond, extra = encode_with_controls(self.clip, text, [p[None] for p in pictures])[0]
                out.append((cond, extra) if self.train_text_encoder else autograd_safe(cond, extra))
        return out


class References:
    """The control latents of the micro-batch whose target latents were fetched last: one [B, C, h, w] tensor per
    control slot (None for a plain batch). The trainer fetches a batch's latents right before its forward."""

    def __init__(self):
        self.current: list[torch.Tensor] | None = None

    def for_sample(self, i: int, latent_dims: int, device) -> dict:
        """``extra_conds`` arguments for sample ``i``: its reference latents, raw (the family's ``extra_conds`` applies
        process_latent_in itself, as for the ReferenceLatent node's)."""
        if not self.current:
            return {}
        refs = [r[i:i + 1].to(device) for r in self.current]
        if latent_dims == 3:   # Qwen-Image reads [B, C, T, H, W]; an image is one frame
            refs = [r.unsqueeze(2) if r.dim() == 4 else r for r in refs]
        return {"reference_latents": refs}


class EditLatents:
    """A LatentCache that also fetches the batch's control latents into ``references`` (placement's pre-cache
    encodes them with the targets, before the VAE leaves the device)."""

    def __init__(self, cache, references: References):
        self.cache, self.references = cache, references

    def get(self, dataset, refs):
        latents = self.cache.get(dataset, refs)
        self.references.current = self.cache.get_controls(dataset, refs) or None
        return latents

    def __getattr__(self, name):
        return getattr(self.cache, name)


def reference_conditioning(conditioning, latents: list[torch.Tensor]):
    """``conditioning`` with ``latents`` appended as reference latents, as the host's ReferenceLatent node does."""
    import node_helpers
    for lat in latents:
        conditioning = node_helpers.conditioning_set_values(conditioning, {"reference_latents": [lat]}, append=True)
    return conditioning
