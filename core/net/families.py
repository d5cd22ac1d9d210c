"""Which layers each model family trains, as data: family string -> regexes on the host's module names.

The family string comes from the host (``host.families.family_of``: the model class the host detected),
never from name guessing; the names matched here are the host's own module names relative to the
diffusion model (e.g. ``double_blocks.0.img_attn.qkv`` for Flux), so they are what LoraLoader patches.

Per preset (kohya's meaning, as sd-scripts / musubi-tuner / ai-toolkit train each family):
  attn      the attention projections inside the transformer blocks
  attn_mlp  every Linear inside the transformer blocks: attention, MLP/feed-forward and the per-block
            modulation (kohya's ``lora_flux`` and ``lora_sd3`` target the whole block classes; musubi-tuner
            targets the whole ``QwenImageTransformerBlock`` / ``WanAttentionBlock`` / Z-Image block)
  full      adds the embedders, global modulation and final layers outside the blocks
A family the table does not know gets every Linear of the diffusion model's transformer blocks (any
ModuleList of blocks, at any depth), with a warning naming the family.
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass

log = logging.getLogger("kiln")

PRESETS = ("attn", "attn_mlp", "full")


@dataclass(frozen=True)
class FamilyTargets:
    blocks: str        # a transformer block's prefix: every Linear below it is in ``attn_mlp``
    attn: str          # attention projections (searched in the name relative to the diffusion model)
    full_extra: str    # Linear layers outside the blocks that ``full`` adds
    block_names: str = ""   # regex with groups (kind, index) naming blocks for block weights


# Modules below ``diffusion_model.``; SD-family UNets keep the LDM regexes in core.net.targets.
FAMILY_TARGETS: dict[str, FamilyTargets] = {
    # Flux.1 (dev, schnell) and Chroma: double-stream blocks (img/txt attention, MLP, modulation) and
    # single-stream blocks (fused qkv+MLP linear1, linear2, modulation). Chroma has no per-block
    # modulation linears (its distilled_guidance_layer makes them) so the same table fits.
    "flux1": FamilyTargets(
        blocks=r"^(double_blocks|single_blocks)\.\d+\.",
        attn=r"^double_blocks\.\d+\.(img|txt)_attn\.(qkv|proj)$|^single_blocks\.\d+\.linear[12]$",
        full_extra=r"^(img_in|txt_in|time_in\.\w+|vector_in\.\w+|guidance_in\.\w+|final_layer\.\w+(\.\d+)?|"
                   r"distilled_guidance_layer\..+)$",
        block_names=r"^(double|single)_blocks\.(\d+)\."),
    # FLUX.2: the same blocks, modulation shared across blocks (global, outside them: ``full``).
    "flux2": FamilyTargets(
        blocks=r"^(double_blocks|single_blocks)\.\d+\.",
        attn=r"^double_blocks\.\d+\.(img|txt)_attn\.(qkv|proj)$|^single_blocks\.\d+\.linear[12]$",
        full_extra=r"^(img_in|txt_in|time_in\.\w+|guidance_in\.\w+|final_layer\.\w+(\.\d+)?|"
                   r"double_stream_modulation_(img|txt)\.lin|single_stream_modulation\.lin)$",
        block_names=r"^(double|single)_blocks\.(\d+)\."),
    # SD3 / SD3.5 MMDiT: joint blocks, each a context block and an x block (SD3.5 adds attn2).
    "sd3": FamilyTargets(
        blocks=r"^joint_blocks\.\d+\.",
        attn=r"^joint_blocks\.\d+\.(context_block|x_block)\.attn2?\.(qkv|proj)$",
        full_extra=r"^(context_embedder|t_embedder\.mlp\.\d+|y_embedder\.mlp\.\d+|final_layer\.\w+(\.\d+)?)$",
        block_names=r"^(joint)_blocks\.(\d+)\."),
    # Qwen-Image: diffusers-style MMDiT blocks (musubi-tuner names them lora_unet_transformer_blocks_*).
    "qwen-image": FamilyTargets(
        blocks=r"^transformer_blocks\.\d+\.",
        attn=r"^transformer_blocks\.\d+\.attn\.(to_q|to_k|to_v|to_out\.0|add_q_proj|add_k_proj|add_v_proj|to_add_out)$",
        full_extra=r"^(img_in|txt_in|time_text_embed\..+|norm_out\.linear|proj_out)$",
        block_names=r"^(transformer)_blocks\.(\d+)\."),
    # Wan 2.1/2.2: self- and cross-attention and the feed-forward (its modulation is a parameter).
    "wan": FamilyTargets(
        blocks=r"^blocks\.\d+\.",
        attn=r"^blocks\.\d+\.(self_attn|cross_attn)\.(q|k|v|o|k_img|v_img)$",
        full_extra=r"^(text_embedding\.\d+|time_embedding\.\d+|time_projection\.\d+|head\.head|img_emb\..+)$",
        block_names=r"^(blocks)\.(\d+)\."),
    # Lumina2 / Z-Image (NextDiT): main layers plus the noise and context refiner blocks.
    "lumina2": FamilyTargets(
        blocks=r"^(layers|noise_refiner|context_refiner)\.\d+\.",
        attn=r"^(layers|noise_refiner|context_refiner)\.\d+\.attention\.(qkv|out)$",
        full_extra=r"^(x_embedder|t_embedder\.mlp\.\d+|cap_embedder\.\d+|final_layer\..+)$",
        block_names=r"^(layers|noise_refiner|context_refiner)\.(\d+)\."),
    # HiDream: double- and single-stream blocks (MoE feed-forwards inside).
    "hidream": FamilyTargets(
        blocks=r"^(double_stream_blocks|single_stream_blocks)\.\d+\.",
        attn=r"^(double_stream_blocks|single_stream_blocks)\.\d+\.block\.attn1\.(to_q|to_k|to_v|to_out|"
             r"to_q_t|to_k_t|to_v_t|to_out_t)$",
        full_extra=r"^(x_embedder\..+|t_embedder\..+|p_embedder\..+|caption_projection\..+|final_layer\..+)$",
        block_names=r"^(double_stream|single_stream)_blocks\.(\d+)\."),
    # LTX-Video and LTX-2: ai-toolkit's ltx2 model targets the whole LTX2VideoTransformer3DModel's Linears, DiffSynth's
    # LTX-2 examples the attention projections (to_q/to_k/to_v/to_out.0). Kiln trains video (LTX-2's audio latent
    # is empty, host.families.TRAIN_CONDS), so the audio paths (audio_attn*, audio_ff, the audio<->video
    # cross-attentions), which then never run, are left out.
    "ltxv": FamilyTargets(
        blocks=r"^transformer_blocks\.\d+\.(attn1|attn2|ff)\.",
        attn=r"^transformer_blocks\.\d+\.(attn1|attn2)\.(to_q|to_k|to_v|to_out\.0)$",
        full_extra=r"^(patchify_proj|proj_out|adaln_single\..+|caption_projection\..+|"
                   r"video_embeddings_connector\..+)$",
        block_names=r"^(transformer)_blocks\.(\d+)\."),
    # HunyuanVideo (1.0, 1.5) and HunyuanImage 2.1: musubi-tuner's lora_hv_1_5 targets MMDoubleStreamBlock (every
    # Linear of the double blocks, modulation included; embedders left out), its HunyuanVideo LoRA the single
    # blocks too.
    "hunyuan-video": FamilyTargets(
        blocks=r"^(double_blocks|single_blocks)\.\d+\.",
        attn=r"^double_blocks\.\d+\.(img|txt)_attn\.(qkv|proj)$|^single_blocks\.\d+\.linear[12]$",
        full_extra=r"^(img_in\..+|txt_in\..+|time_in\..+|vector_in\..+|guidance_in\..+|byt5_in\..+|"
                   r"vision_in\..+|cond_type_embedding|final_layer\..+)$",
        block_names=r"^(double|single)_blocks\.(\d+)\."),
    # Kandinsky 5 (video and image): musubi-tuner's lora_kandinsky targets the text and visual transformer blocks'
    # self/cross attention (to_query/to_key/to_value/out_layer) and feed-forward (in_layer/out_layer) and excludes
    # the modulation.
    "kandinsky5": FamilyTargets(
        blocks=r"^(text|visual)_transformer_blocks\.\d+\.(self_attention|cross_attention|feed_forward)\.",
        attn=r"^(text|visual)_transformer_blocks\.\d+\.(self_attention|cross_attention)\."
             r"(to_query|to_key|to_value|out_layer)$",
        full_extra=r"^((time|text|pooled_text|visual)_embeddings\..+|(text|visual)_transformer_blocks\.\d+\."
                   r"(text|visual)_modulation\..+|out_layer\..+)$",
        block_names=r"^(text_transformer|visual_transformer)_blocks\.(\d+)\."),
    # Krea 2 (single-stream DiT): ai-toolkit's krea2 model targets every Linear of SingleStreamDiT; here the
    # single-stream blocks and the text-fusion transformer's blocks (attention wq/wk/wv/wo and its gate, SwiGLU).
    "krea2": FamilyTargets(
        blocks=r"^(blocks|txtfusion\.(layerwise|refiner)_blocks)\.\d+\.",
        attn=r"^(blocks|txtfusion\.(layerwise|refiner)_blocks)\.\d+\.attn\.(wq|wk|wv|wo|gate)$",
        full_extra=r"^(first|last\..+|tmlp\.\d+|txtmlp\.\d+|tproj\.\d+|txtfusion\.projector|.*modulation.*)$",
        block_names=r"^(blocks)\.(\d+)\."),
    # Ideogram 4: musubi-tuner's lora_ideogram4 targets Ideogram4TransformerBlock's attention.(qkv|o) and
    # feed_forward.w1/w2/w3 (the per-block adaLN modulation left out).
    "ideogram4": FamilyTargets(
        blocks=r"^layers\.\d+\.(attention|feed_forward)\.",
        attn=r"^layers\.\d+\.attention\.(qkv|o)$",
        full_extra=r"^(input_proj|llm_cond_proj|adaln_proj|t_embedding\..+|layers\.\d+\.adaln_modulation|"
                   r"final_layer\..+)$",
        block_names=r"^(layers)\.(\d+)\."),
    # HiDream-O1: musubi-tuner's lora_hidream_o1 targets the Qwen3-VL decoder layers (the host's
    # ``language_model.layers.N``) (text-to-image; the vision
    # tower only with reference images) and, beside them, the pixel patch embedder, final layer and timestep
    # embedder (``full`` here).
    "hidreamo1": FamilyTargets(
        blocks=r"^language_model\.(model\.)?layers\.\d+\.",
        attn=r"^language_model\.(model\.)?layers\.\d+\.self_attn\.(q_proj|k_proj|v_proj|o_proj)$",
        full_extra=r"^(x_embedder\..+|final_layer2\..+|t_embedder1\..+)$",
        block_names=r"^language_model\.(?:model\.)?(layers)\.(\d+)\."),
}

# Family strings (as the metadata table and the host's detection spell them) -> targets entry.
FAMILY_ALIASES = {"flux1-dev": "flux1", "flux1-schnell": "flux1", "chroma": "flux1", "flux2": "flux2",
                  "sd3": "sd3", "qwen-image": "qwen-image", "wan": "wan", "lumina2": "lumina2",
                  "z-image": "lumina2", "hidream": "hidream", "chroma-radiance": "flux1",
                  "ltxv": "ltxv", "ltx2": "ltxv", "hunyuan-video": "hunyuan-video",
                  "hunyuan-video-1.5": "hunyuan-video", "hunyuan-image-2.1": "hunyuan-video",
                  "kandinsky5": "kandinsky5", "kandinsky5-image": "kandinsky5", "krea2": "krea2",
                  "ideogram4": "ideogram4", "hidreamo1": "hidreamo1"}
UNET_FAMILIES = ("sd1", "sd2", "sdxl")     # the LDM UNet regexes of core.net.targets

# A module inside an indexed stack, at any depth (``blocks.3.``, ``language_model.model.layers.0.``).
_GENERIC_BLOCKS = re.compile(r"(^|\.)[A-Za-z_]\w*\.\d+\.")
_GENERIC_ATTN = re.compile(r"(attn|attention)")
_warned: set[str] = set()
_compiled: dict[str, tuple[re.Pattern, re.Pattern, re.Pattern]] = {}


def table_for(family: str) -> FamilyTargets | None:
    return FAMILY_TARGETS.get(FAMILY_ALIASES.get(family, family))


def _patterns(family: str):
    if family not in _compiled:
        t = table_for(family)
        _compiled[family] = (re.compile(t.blocks), re.compile(t.attn), re.compile(t.full_extra))
    return _compiled[family]


def wanted_in_family(name: str, is_linear: bool, preset: str, family: str) -> bool:
    """``name`` is relative to the diffusion model. Only Linear layers (and 1x1-as-Linear) train here:
    the transformer families have no convs worth a LoRA (patch embedders are ``full`` at most)."""
    if preset not in PRESETS:
        raise ValueError(f"Unknown target preset {preset!r}; choose one of {PRESETS}")
    if not is_linear:
        return False
    if table_for(family) is None:
        if family not in _warned:
            _warned.add(family)
            log.warning("Kiln: no target table for model family %r; training every Linear of its "
                        "transformer blocks (attn: those named attn/attention). Check the layer count "
                        "in the log and report the family so it gets a table.", family)
        in_blocks = bool(_GENERIC_BLOCKS.search(name))
        if preset == "full":
            return True
        if preset == "attn":
            return in_blocks and bool(_GENERIC_ATTN.search(name))
        return in_blocks
    blocks, attn, extra = _patterns(family)
    if attn.search(name):
        return True
    if preset == "attn":
        return False
    if blocks.search(name):
        return True
    return preset == "full" and bool(extra.search(name))


def family_block(name: str, family: str) -> str | None:
    """Block name for block-wise weights and inspect (e.g. DOUBLE03, SINGLE12, JOINT00, BLOCKS07)."""
    t = table_for(family)
    pattern = t.block_names if t else r"^([A-Za-z_]+?)(?:_blocks)?\.(\d+)\."
    m = re.search(pattern, name)
    return transformer_block_name(m.group(1), int(m.group(2))) if m else None


def transformer_block_name(container: str, index: int) -> str:
    """The block-weight name of block ``index`` of a transformer container, with or without its
    ``_blocks`` ("double_blocks", "double_stream", "joint", "blocks", "layers") -> DOUBLE03, JOINT00,
    BLOCKS07, LAYERS02: one naming for training (host names) and for files (kohya names)."""
    kind = container[: -len("_blocks")] if container.endswith("_blocks") else container
    return f"{kind.upper().replace('_STREAM', '')}{index:02d}"
