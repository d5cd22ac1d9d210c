"""The model family of a loaded MODEL, from the class the host detected (its supported_models config
class, walked up the class hierarchy so a host's variants map to their family), and each family's
training details that depend on the host: timestep sampling defaults and the Flux guidance input.

Family strings are the ones core.net.families and core.lora.metadata key their tables by."""
from __future__ import annotations

import re

# supported_models class name -> family string (first match walking the config class's MRO).
FAMILY_OF_CONFIG_CLASS = {
    "SD15": "sd1", "SD20": "sd2", "SDXLRefiner": "sdxl", "SDXL": "sdxl", "SD3": "sd3",
    "FluxSchnell": "flux1-schnell", "Flux2": "flux2", "Flux": "flux1-dev", "Chroma": "chroma",
    "QwenImage": "qwen-image", "ZImage": "z-image", "Lumina2": "lumina2", "WAN21_T2V": "wan",
    "HiDream": "hidream",
    # The 2026 host's families Kiln has tables for (core.net.families).
    "LTXV": "ltxv", "LTXAV": "ltx2", "HunyuanVideo15": "hunyuan-video-1.5", "HunyuanVideo15_SR_Distilled":
    "hunyuan-video-1.5", "HunyuanVideo": "hunyuan-video", "HunyuanImage21": "hunyuan-image-2.1",
    "HunyuanImage21Refiner": "hunyuan-image-2.1", "Kandinsky5Image": "kandinsky5-image", "Kandinsky5": "kandinsky5",
    "Krea2": "krea2", "Ideogram4": "ideogram4", "ChromaRadiance": "chroma-radiance", "HiDreamO1": "hidreamo1",
}

# kohya's ss_base_model_version per family (sd-scripts' values where it writes them).
BASE_MODEL_VERSION = {"sd1": "sd_v1", "sd2": "sd_v2", "sdxl": "sdxl_base_v1-0", "sd3": "sd3",
                      "flux1-dev": "flux1", "flux1-schnell": "flux1", "chroma": "chroma", "flux2": "flux2",
                      "qwen-image": "qwen_image", "z-image": "z_image", "wan": "wan", "wan2.2-5b": "wan2.2_5b",
                      "wan2.2-a14b": "wan2.2_a14b", "lumina2": "lumina2", "hidream": "hidream",
                      # musubi-tuner's architecture names (dataset/architectures.py *_FULL) where it has one
                      "ltxv": "ltxv", "ltx2": "ltx2", "hunyuan-video-1.5": "hunyuan_video_1_5",
                      "hunyuan-video": "hunyuan_video", "hunyuan-image-2.1": "hunyuan_image_2_1",
                      "kandinsky5": "kandinsky5", "kandinsky5-image": "kandinsky5_image", "krea2": "krea2",
                      "ideogram4": "ideogram4", "chroma-radiance": "chroma_radiance", "hidreamo1": "hidream_o1_image"}


def family_of(model_patcher) -> str:
    """Family string of a MODEL (ModelPatcher); an unknown class gives its lower-cased class name, which
    core.net.families answers with the generic every-Linear-in-the-blocks targets and a warning."""
    config = model_patcher.model.model_config
    for cls in type(config).__mro__:
        if cls.__name__ in FAMILY_OF_CONFIG_CLASS:
            return FAMILY_OF_CONFIG_CLASS[cls.__name__]
    return type(config).__name__.lower()


def model_file_name(model_patcher) -> str:
    """The file the MODEL was loaded from (the host records the loader and its path in cached_patcher_init); ""
    where it does not."""
    init = getattr(model_patcher, "cached_patcher_init", None)
    if isinstance(init, tuple) and len(init) > 1 and init[1] and isinstance(init[1][0], str):
        return init[1][0].replace("\\", "/").rsplit("/", 1)[-1]
    return ""


def release_of(model_patcher) -> str:
    """The family string a saved file's metadata names: the family, told apart where one family's releases differ
    for the user (Wan 2.2's TI2V 5B by its host class; the 2.2 A14B experts, which load as Wan 2.1's class, by the
    file name the official releases carry: ``wan2.2_t2v_high_noise_14B...``)."""
    family = family_of(model_patcher)
    if family != "wan":
        return family
    classes = [c.__name__ for c in type(model_patcher.model.model_config).__mro__]
    if classes[0] == "WAN22_T2V":
        return "wan2.2-5b"
    if classes[0].startswith("WAN22") or re.search(r"wan[-_. ]?2[._]?2", model_file_name(model_patcher).lower()):
        return "wan2.2-a14b"
    return family


def base_model_version(model_patcher) -> str:
    if any(c.__name__ == "SDXLRefiner" for c in type(model_patcher.model.model_config).__mro__):
        return "sdxl_refiner_v1-0"
    family = release_of(model_patcher)
    return BASE_MODEL_VERSION.get(family, family)


# Training noise-level sampling per family (what "auto" means; SD-family UNets and unknown families draw
# uniformly). Flow families go through the host's model_sampling, which applies the family's shift
# (SD3 3.0, Flux's resolution shift, Qwen-Image/Wan/Z-Image/Lumina2 their own), as kohya's and
# musubi-tuner's "shift" sampling does with the family's shift value. SD3 trains logit-normal (its
# paper's and sd-scripts' logit_normal weighting); Flux-type models sigmoid (kohya's --timestep_sampling
# sigmoid, the FLUX training guides' and ai-toolkit's choice).
#
# The 2026 host's families (their shift is the host's: LTX 2.37, HunyuanVideo 1.5 7.0, Kandinsky 5 10.0 video and
# 3.0 image, Krea 2 1.15, Ideogram 4 1.0):
#   LTX-Video / LTX-2: logit-normal on the shifted schedule (Lightricks' ltx-trainer samples "shifted_logit_normal";
#     ai-toolkit's ltx2 shifts 0.95-2.05 by sequence length);
#   HunyuanVideo 1.5, Kandinsky 5: "shift" sampling, i.e. uniform through the shifted schedule (musubi-tuner's
#     docs: --timestep_sampling shift, --discrete_flow_shift 7.0 for HunyuanVideo, 5.0 for Kandinsky 5);
#   Krea 2, Ideogram 4: sigmoid (ai-toolkit's krea2/ideogram4 models: its default timestep_type; Krea 2's
#     schedule shift 0.5-1.15, Ideogram 4's 1.0, which the host's own shifts match at full size).
TIMESTEP_SAMPLING = {"sd3": "logit_normal", "flux1-dev": "sigmoid", "flux1-schnell": "sigmoid",
                     "chroma": "sigmoid", "flux2": "sigmoid", "qwen-image": "uniform", "wan": "uniform",
                     "z-image": "uniform", "lumina2": "uniform", "hidream": "uniform",
                     "ltxv": "logit_normal", "ltx2": "logit_normal", "hunyuan-video-1.5": "uniform",
                     "hunyuan-video": "uniform", "kandinsky5": "uniform", "kandinsky5-image": "uniform",
                     "krea2": "sigmoid", "ideogram4": "sigmoid", "chroma-radiance": "sigmoid"}


def timestep_sampling(family: str) -> str:
    return TIMESTEP_SAMPLING.get(family, "uniform")


# Flux.1 dev reads a distilled guidance strength; kohya trains it with guidance 1.0 (--guidance_scale).
TRAIN_GUIDANCE = {"flux1-dev": 1.0, "flux2": 1.0}


# LTX-2's model reads its input as [video, audio] (comfy/ldm/lightricks/av_model.py separates them, then patchifies
# the video); the host's apply_model hands it that list where extra_conds carry ``latent_shapes``, one shape per
# modality. Kiln trains on video (or stills) alone: one entry, which the host's unpack_latents keeps whole (it reads
# the shapes only to split two or more), and the model adds an empty audio latent, as for the host's own video-only
# latents. Audio layers get no gradient and are left out of LTX-2's targets (core.net.families).
VIDEO_ONLY_LATENT_SHAPES = [("video",)]
TRAIN_CONDS = {"ltx2": {"latent_shapes": VIDEO_ONLY_LATENT_SHAPES}}


# A line a clip run logs once, per family, where training leaves part of what the clips hold out.
CLIP_NOTES = {"ltx2": "LTX-2 trains its video stream only: the clips' audio is not read, the audio latent stays "
                      "empty and the audio layers are not trained (the LoRA changes video, not sound)"}


def clip_note(family: str) -> str:
    """What a run on clips leaves out for this family ("" for none): LTX-2's audio stream."""
    return CLIP_NOTES.get(family, "")


def training_conds(family: str) -> dict:
    """Extra inputs the family's extra_conds reads during training (e.g. Flux dev's guidance, LTX-2's latent
    layout)."""
    out = dict(TRAIN_CONDS.get(family, {}))
    guidance = TRAIN_GUIDANCE.get(family)
    if guidance is not None:
        out["guidance"] = guidance
    return out
