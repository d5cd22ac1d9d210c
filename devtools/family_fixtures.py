"""Tiny models of the transformer families, built with the host's own classes (random weights, fixed
seeds) and written as files the host's own loaders read and detect: a diffusion-model file for
UNETLoader, a 16-channel TAESD-layout VAE file for VAELoader.

Text encoders: the families' real encoders (T5-XXL, Qwen2.5-VL, Qwen3, Gemma) are built by the host
from fixed configs at full size, and the archives lack some of their tokenizers, so a tiny text
encoder is built here from the host's own CLIP text-model class (SDClipModel with a shrunken config,
the host's CLIP tokenizer) whose hidden width and pooled projection match what the tiny diffusion
model reads (its context and pooled-vector widths). It is a real ``comfy.sd.CLIP``: tokenize, encode,
LoraLoader and the samplers treat it as any other.
"""
from __future__ import annotations

import contextlib
import functools
import hashlib
from dataclasses import dataclass
from pathlib import Path

import torch

from ..core.lora.io import atomic_write_bytes
from .fixtures import _seeded_init

FAMILY_FIXTURE_VERSION = "4"


@dataclass(frozen=True)
class FamilySpec:
    family: str             # the family string host.families.family_of must give
    model_class: str        # comfy.ldm module path + class name
    kwargs: dict            # constructor arguments (tiny widths, 1-2 blocks)
    context_dim: int        # text features the model reads
    pooled_dim: int = 0     # pooled text vector (0: none); the host's CLIP pools at its own width,
                            # so a family reading one gets pooled_dim == context_dim here
    latent_channels: int = 16
    out_layer: str = ""     # final projection scaled down so the random model predicts sane values
    # Families whose host detection fixes the widths (Qwen-Image 3072, Z-Image 3840, Lumina2 2304: a
    # single block is hundreds of MB) are built from the host's own supported_models config class with
    # a tiny unet_config instead of a file through UNETLoader (what the loader does after detection).
    config_class: str = ""
    host_class: str = ""        # the supported_models class the host must have (availability check)
    params_class: str = ""      # dataclass the model class reads its kwargs into (Flux, Chroma)
    te_attention_mask: bool = False   # the family's extra_conds reads the text attention mask
    # The family's conditioning needs the host's own text-encoder class (HiDream reads the Llama hidden
    # states it fills with zeros when only CLIP-L is given): the CLIPLoader type to load a CLIP-L file with.
    clip_type: str = ""
    # The host's own text encoder, tiny, for families whose conditioning reads what only it gives (OmniGen2's unpadded
    # states, HunyuanDiT's mT5 states, HiDream-O1's token ids): a key of REAL_TEXT_ENCODERS.
    own_text_encoder: str = ""
    resolution: int = 64        # training pixels (PixArt's position embedding needs a latent over 32 cells)


def _flux(guidance: bool) -> dict:
    return dict(image_model="flux", in_channels=16, out_channels=16, vec_in_dim=64, context_in_dim=64, hidden_size=128,
                mlp_ratio=4.0, num_heads=1, depth=1, depth_single_blocks=1, axes_dim=[16, 56, 56],
                theta=10000, patch_size=2, qkv_bias=True, guidance_embed=guidance, txt_ids_dims=[])


FAMILIES: dict[str, FamilySpec] = {
    "flux1-dev": FamilySpec("flux1-dev", "comfy.ldm.flux.model.Flux", _flux(True), 64, 64,
                            out_layer="final_layer.linear", host_class="Flux",
                            params_class="comfy.ldm.flux.model.FluxParams"),
    "flux1-schnell": FamilySpec("flux1-schnell", "comfy.ldm.flux.model.Flux", _flux(False), 64, 64,
                                out_layer="final_layer.linear", host_class="FluxSchnell",
                                params_class="comfy.ldm.flux.model.FluxParams"),
    # FLUX.2 dev (guidance_in) and Klein (none): 128 latent channels, patch 1, global modulation.
    "flux2": FamilySpec("flux2", "comfy.ldm.flux.model.Flux", dict(
        image_model="flux2", in_channels=128, out_channels=128, vec_in_dim=None, context_in_dim=64,
        hidden_size=128, mlp_ratio=3.0, num_heads=1, depth=1, depth_single_blocks=1, axes_dim=[32, 32, 32, 32],
        theta=2000, patch_size=1, qkv_bias=False, guidance_embed=True, txt_ids_dims=[3], global_modulation=True,
        mlp_silu_act=True, ops_bias=False, default_ref_method="index", ref_index_scale=10.0), 64,
        latent_channels=128, out_layer="final_layer.linear", host_class="Flux2",
        params_class="comfy.ldm.flux.model.FluxParams"),
    # SD3.5-style MMDiT (x_block attn2 in the first block, as SD3.5 medium has); widths follow depth
    # (hidden = 64 * depth), as the host's detection expects.
    "sd3": FamilySpec("sd3", "comfy.ldm.modules.diffusionmodules.mmdit.MMDiT",
                      dict(input_size=None, patch_size=2, in_channels=16, out_channels=16, depth=2,
                           num_patches=16 * 16, pos_embed_max_size=16, adm_in_channels=64,
                           context_embedder_config={"target": "torch.nn.Linear",
                                                    "params": {"in_features": 64, "out_features": 128}},
                           qk_norm="rms", x_block_self_attn_layers=[0]),
                      64, 64, out_layer="final_layer.linear", host_class="SD3"),
    "z-image": FamilySpec("z-image", "comfy.ldm.lumina.model.NextDiT", dict(
        # dim 256: Z-Image's modulation reads a 256-wide time embedding (min(dim, 256) in the host)
        image_model="lumina2", patch_size=2, in_channels=16, dim=256, cap_feat_dim=64, n_layers=1,
        n_refiner_layers=1, n_heads=4, n_kv_heads=4, multiple_of=16, qk_norm=True, axes_dims=[16, 24, 24],
        axes_lens=[1536, 512, 512], rope_theta=256.0, ffn_dim_multiplier=8.0 / 3.0, z_image_modulation=True,
        time_scale=1000.0), 64, out_layer="final_layer.linear", config_class="ZImage", te_attention_mask=True),
    "lumina2": FamilySpec("lumina2", "comfy.ldm.lumina.model.NextDiT", dict(
        image_model="lumina2", patch_size=2, in_channels=16, dim=64, cap_feat_dim=64, n_layers=1,
        n_refiner_layers=1, n_heads=1, n_kv_heads=1, multiple_of=16, qk_norm=True, axes_dims=[16, 24, 24],
        axes_lens=[300, 512, 512], rope_theta=10000.0, ffn_dim_multiplier=4.0), 64,
        out_layer="final_layer.linear", config_class="Lumina2", te_attention_mask=True),
    "qwen-image": FamilySpec("qwen-image", "comfy.ldm.qwen_image.model.QwenImageTransformer2DModel", dict(
        image_model="qwen_image", in_channels=64, out_channels=16, num_layers=1, attention_head_dim=64,
        num_attention_heads=1, joint_attention_dim=64, axes_dims_rope=(16, 24, 24)), 64,
        out_layer="proj_out", config_class="QwenImage"),
    "wan": FamilySpec("wan", "comfy.ldm.wan.model.WanModel", dict(
        image_model="wan2.1", model_type="t2v", patch_size=(1, 2, 2), in_dim=16, dim=128, ffn_dim=256,
        freq_dim=256, text_dim=64, out_dim=16, num_heads=1, num_layers=1, window_size=(-1, -1), qk_norm=True,
        cross_attn_norm=True, eps=1e-6), 64, out_layer="head.head", config_class="WAN21_T2V"),
    # SDXL: the host's SDXL config with a one-level UNet; the adm vector is the pooled text (64 here) plus
    # six 256-wide size/crop embeddings, hence adm_in_channels 64 + 1536.
    "sdxl": FamilySpec("sdxl", "comfy.ldm.modules.diffusionmodules.openaimodel.UNetModel", dict(
        # the config class fixes 64 channels per head, so 64 channels make one head
        image_size=32, in_channels=4, out_channels=4, model_channels=64, num_res_blocks=[1], channel_mult=[1],
        transformer_depth=[1], transformer_depth_output=[1, 1], transformer_depth_middle=1, context_dim=64,
        num_head_channels=64, use_linear_in_transformer=True, use_spatial_transformer=True, legacy=False,
        adm_in_channels=64 + 6 * 256, num_classes="sequential", use_temporal_attention=False), 64, 64,
        latent_channels=4, out_layer="out.2", config_class="SDXL"),
    # Wan 2.2 TI2V 5B: Wan's blocks on the 48-channel Wan 2.2 latent (the A14B pair is Wan 2.1's layout).
    "wan2.2-5b": FamilySpec("wan", "comfy.ldm.wan.model.WanModel", dict(
        image_model="wan2.1", model_type="t2v", patch_size=(1, 2, 2), in_dim=48, dim=128, ffn_dim=256,
        freq_dim=256, text_dim=64, out_dim=48, num_heads=1, num_layers=1, window_size=(-1, -1), qk_norm=True,
        cross_attn_norm=True, eps=1e-6), 64, latent_channels=48, out_layer="head.head", config_class="WAN22_T2V"),
    # HiDream I1: double- and single-stream blocks with MoE feed-forwards; reads T5's 4096-wide states, the
    # CLIP-L + CLIP-G pooled vector (2048) and a stack of Llama layers (two picked here, as llama_layers).
    "hidream": FamilySpec("hidream", "comfy.ldm.hidream.model.HiDreamImageTransformer2DModel", dict(
        image_model="hidream", patch_size=2, in_channels=16, out_channels=16, num_layers=1, num_single_layers=1,
        attention_head_dim=64, num_attention_heads=1, caption_channels=[4096, 4096], text_emb_dim=2048,
        num_routed_experts=2, num_activated_experts=1, axes_dims_rope=[32, 16, 16], max_resolution=[128, 128],
        llama_layers=[0, 31]), 4096, 2048, out_layer="final_layer.linear", config_class="HiDream",
        clip_type="hidream"),
    # Chroma: Flux's blocks, modulations from the distilled guidance layer (out_dim = hidden size).
    "chroma": FamilySpec("chroma", "comfy.ldm.chroma.model.Chroma", dict(
        image_model="chroma", in_channels=64, out_channels=64, context_in_dim=64, hidden_size=128,
        mlp_ratio=4.0, num_heads=1, depth=1, depth_single_blocks=1, axes_dim=[16, 56, 56], theta=10000,
        patch_size=2, qkv_bias=True, in_dim=64, out_dim=128, hidden_dim=256, n_layers=1, txt_ids_dims=[],
        vec_in_dim=None), 64, out_layer="final_layer.linear", config_class="Chroma",
        params_class="comfy.ldm.chroma.model.ChromaParams"),
}

# The other diffusion families of the 2026 host (comfy/supported_models.py), each built from its supported_models
# config class with a tiny unet_config (the family string is host.families.family_of's: the lower-cased class name
# where Kiln has no table) (their detection fixes most widths, or they have no file layout a tiny file
# could take). Text widths match the tiny CLIP stand-in: its hidden states are the model's context (a family that
# fuses several encoder layers reads them side by side: Krea 2's txtlayers x txtdim, Ideogram 4's llm features).
NEW_FAMILIES: dict[str, FamilySpec] = {
    "ltxv": FamilySpec("ltxv", "comfy.ldm.lightricks.model.LTXVModel", dict(
        image_model="ltxv", in_channels=128, cross_attention_dim=64, attention_head_dim=32, num_attention_heads=2,
        caption_channels=64, num_layers=1), 64, latent_channels=128, out_layer="proj_out", config_class="LTXV",
        te_attention_mask=True),
    "ltxav": FamilySpec("ltx2", "comfy.ldm.lightricks.av_model.LTXAVModel", dict(
        image_model="ltxav", in_channels=128, audio_in_channels=128, cross_attention_dim=64,
        audio_cross_attention_dim=32, attention_head_dim=32, audio_attention_head_dim=16, num_attention_heads=2,
        audio_num_attention_heads=2, caption_channels=64, num_layers=1, connector_attention_head_dim=32,
        connector_num_attention_heads=2, connector_num_layers=1), 64, latent_channels=128,
        out_layer="proj_out", config_class="LTXAV"),
    "hunyuan-video-1.5": FamilySpec("hunyuan-video-1.5", "comfy.ldm.hunyuan_video.model.HunyuanVideo", dict(
        image_model="hunyuan_video", in_channels=65, out_channels=32, vec_in_dim=None, context_in_dim=64,
        hidden_size=128, mlp_ratio=4.0, num_heads=1, depth=1, depth_single_blocks=1, axes_dim=[16, 56, 56],
        theta=256, patch_size=[1, 1, 1], qkv_bias=True, guidance_embed=False, byt5=False, meanflow=False,
        use_cond_type_embedding=True, vision_in_dim=None, meanflow_sum=False), 64, latent_channels=32,
        out_layer="final_layer.linear", config_class="HunyuanVideo15",
        params_class="comfy.ldm.hunyuan_video.model.HunyuanVideoParams", te_attention_mask=True),
    "kandinsky5": FamilySpec("kandinsky5", "comfy.ldm.kandinsky5.model.Kandinsky5", dict(
        image_model="kandinsky5", in_visual_dim=16, out_visual_dim=16, in_text_dim=64, in_text_dim2=64, time_dim=64,
        model_dim=128, ff_dim=256, visual_embed_dim=132, patch_size=(1, 2, 2), num_text_blocks=1,
        num_visual_blocks=1, axes_dims=(16, 24, 24)), 64, 64, out_layer="out_layer.out_layer",
        config_class="Kandinsky5", te_attention_mask=True),
    "kandinsky5-image": FamilySpec("kandinsky5-image", "comfy.ldm.kandinsky5.model.Kandinsky5", dict(
        image_model="kandinsky5", in_visual_dim=16, out_visual_dim=16, in_text_dim=64, in_text_dim2=64, time_dim=64,
        model_dim=128, ff_dim=256, visual_embed_dim=64, patch_size=(1, 2, 2), num_text_blocks=1,
        num_visual_blocks=1, axes_dims=(16, 24, 24), rope_scale_factor=(1.0, 1.0, 1.0)), 64, 64,
        out_layer="out_layer.out_layer", config_class="Kandinsky5Image", te_attention_mask=True),
    "krea2": FamilySpec("krea2", "comfy.ldm.krea2.model.SingleStreamDiT", dict(
        image_model="krea2", features=128, tdim=64, txtdim=32, heads=1, kvheads=1, multiplier=2, layers=1, patch=2,
        channels=16, txtlayers=2, txtheads=2, txtkvheads=2), 64, out_layer="last.linear", config_class="Krea2"),
    "ideogram4": FamilySpec("ideogram4", "comfy.ldm.ideogram4.model.Ideogram4Transformer2DModel", dict(
        image_model="ideogram4", in_channels=128, num_layers=1, num_attention_heads=2, attention_head_dim=32,
        intermediate_size=128, adaln_dim=32, llm_features_dim=64, rope_theta=10000, mrope_section=[6, 5, 5]), 64,
        latent_channels=128, out_layer="final_layer.linear", config_class="Ideogram4", te_attention_mask=True),
    "longcat-image": FamilySpec("longcatimage", "comfy.ldm.flux.model.Flux", dict(
        _flux(False), vec_in_dim=None, txt_ids_dims=[1, 2]), 64, out_layer="final_layer.linear",
        config_class="LongCatImage", params_class="comfy.ldm.flux.model.FluxParams"),
    "omnigen2": FamilySpec("omnigen2", "comfy.ldm.omnigen.omnigen2.OmniGen2Transformer2DModel", dict(
        image_model="omnigen2", patch_size=2, in_channels=16, hidden_size=64, num_layers=1, num_refiner_layers=1,
        num_attention_heads=2, num_kv_heads=1, multiple_of=16, axes_dim_rope=[8, 12, 12], axes_lens=[300, 512, 512],
        text_feat_dim=64, timestep_scale=1000.0), 64, out_layer="norm_out.linear_2", config_class="Omnigen2",
        own_text_encoder="omnigen2"),
    "auraflow": FamilySpec("auraflow", "comfy.ldm.aura.mmdit.MMDiT", dict(
        in_channels=4, out_channels=4, patch_size=2, dim=128, n_layers=2, n_double_layers=1, n_heads=2,
        global_conddim=128, cond_seq_dim=64, max_seq=64), 64, latent_channels=4, out_layer="final_linear",
        config_class="AuraFlow"),
    "pixart-sigma": FamilySpec("pixartsigma", "comfy.ldm.pixart.pixartms.PixArtMS", dict(
        image_model="pixart_sigma", input_size=16, patch_size=2, in_channels=4, hidden_size=64, depth=1, num_heads=1,
        caption_channels=64, model_max_length=77, micro_condition=False), 64,
        latent_channels=4, out_layer="final_layer.linear", config_class="PixArtSigma", resolution=384),
    "hunyuan-dit": FamilySpec("hunyuandit", "comfy.ldm.hydit.models.HunYuanDiT", dict(
        image_model="hydit", input_size=16, patch_size=2, in_channels=4, hidden_size=88, depth=2, num_heads=1,
        text_states_dim=64, text_states_dim_t5=64, text_len=77, text_len_t5=256), 64, latent_channels=4,
        out_layer="final_layer.linear", config_class="HunyuanDiT", own_text_encoder="hunyuan-dit"),
    "stable-cascade-c": FamilySpec("stable_cascade_c", "comfy.ldm.cascade.stage_c.StageC", dict(
        stable_cascade_stage="c", c_in=16, c_out=16, c_r=64, c_cond=64, c_hidden=[64, 64], nhead=[1, 1],
        blocks=[[1, 1], [1, 1]], block_repeat=[[1, 1], [1, 1]], level_config=["CTA", "CTA"], c_clip_text=64,
        c_clip_text_pooled=64, c_clip_seq=4), 64, 64, out_layer="clf.1", config_class="Stable_Cascade_C"),
    "ernie-image": FamilySpec("ernieimage", "comfy.ldm.ernie.model.ErnieImageModel", dict(
        image_model="ernie", hidden_size=128, num_attention_heads=1, num_layers=1, ffn_hidden_size=256,
        in_channels=128, out_channels=128, patch_size=1, text_in_dim=64, rope_axes_dim=(32, 48, 48)), 64,
        latent_channels=128, out_layer="final_linear", config_class="ErnieImage"),
    "anima": FamilySpec("anima", "comfy.ldm.anima.model.Anima", dict(
        image_model="anima", max_img_h=64, max_img_w=64, max_frames=8, in_channels=16, out_channels=16,
        patch_spatial=2, patch_temporal=1, concat_padding_mask=True, model_channels=64, num_blocks=1, num_heads=1,
        crossattn_emb_channels=64, pos_emb_cls="rope3d", pos_emb_learnable=True, use_adaln_lora=True,
        adaln_lora_dim=16, rope_enable_fps_modulation=False), 64, out_layer="final_layer.linear",
        config_class="Anima", params_class="comfy.ldm.cosmos.predict2.MiniTrainDIT"),
    "cosmos-predict2": FamilySpec("cosmost2ipredict2", "comfy.ldm.cosmos.predict2.MiniTrainDIT", dict(
        image_model="cosmos_predict2", max_img_h=64, max_img_w=64, max_frames=8, in_channels=16, out_channels=16,
        patch_spatial=2, patch_temporal=1, concat_padding_mask=True, model_channels=64, num_blocks=1, num_heads=1,
        crossattn_emb_channels=64, pos_emb_cls="rope3d", pos_emb_learnable=True, use_adaln_lora=True,
        adaln_lora_dim=16, rope_enable_fps_modulation=False), 64, out_layer="final_layer.linear",
        config_class="CosmosT2IPredict2"),
    "joyimage": FamilySpec("joyimage", "comfy.ldm.joyimage.model.JoyImageTransformer3DModel", dict(
        image_model="joyimage", patch_size=[1, 2, 2], in_channels=16, hidden_size=128, num_attention_heads=1,
        text_dim=64, mlp_width_ratio=2.0, num_layers=1, rope_dim_list=[16, 56, 56], theta=10000), 64,
        out_layer="proj_out", config_class="JoyImage"),
    "chroma-radiance": FamilySpec("chroma-radiance", "comfy.ldm.chroma_radiance.model.ChromaRadiance", dict(
        image_model="chroma_radiance", in_channels=3, out_channels=3, context_in_dim=64, hidden_size=128,
        mlp_ratio=4.0, num_heads=1, depth=1, depth_single_blocks=1, axes_dim=[16, 56, 56], theta=10000,
        patch_size=8, qkv_bias=True, in_dim=64, out_dim=128, hidden_dim=256, n_layers=1, txt_ids_dims=[],
        vec_in_dim=None, nerf_hidden_size=16, nerf_mlp_ratio=2, nerf_depth=1, nerf_max_freqs=4, nerf_tile_size=0,
        nerf_final_head_type="conv", nerf_embedder_dtype=torch.float32, use_x0=False, use_sequential_txt_ids=False),
        64, latent_channels=3, out_layer="nerf_final_layer_conv.conv", config_class="ChromaRadiance",
        params_class="comfy.ldm.chroma_radiance.model.ChromaRadianceParams"),
    # HiDream-O1: a pixel-space DiT inside a Qwen3-VL decoder (language_model.model.layers); its text encoder only
    # tokenizes (the host's HiDreamO1TE), the decoder reads the ids.
    "hidream-o1": FamilySpec("hidreamo1", "comfy.ldm.hidream_o1.model.HiDreamO1Transformer", dict(
        image_model="hidream_o1", text_config_overrides=dict(
            hidden_size=64, intermediate_size=128, num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1,
            head_dim=32, rope_dims=[6, 5, 5]),
        vision_config_overrides=dict(hidden_size=32, num_heads=1, intermediate_size=64, depth=1,
                                     deepstack_visual_indexes=())), 64, latent_channels=3,
        out_layer="final_layer2.linear", config_class="HiDreamO1", own_text_encoder="hidream-o1"),
    "hunyuan-video": FamilySpec("hunyuan-video", "comfy.ldm.hunyuan_video.model.HunyuanVideo", dict(
        image_model="hunyuan_video", in_channels=16, out_channels=16, vec_in_dim=64, context_in_dim=64,
        hidden_size=128, mlp_ratio=4.0, num_heads=1, depth=1, depth_single_blocks=1, axes_dim=[16, 56, 56],
        theta=256, patch_size=[1, 2, 2], qkv_bias=True, guidance_embed=True, byt5=False, meanflow=False,
        use_cond_type_embedding=False, vision_in_dim=None, meanflow_sum=False), 64, 64,
        out_layer="final_layer.linear", config_class="HunyuanVideo",
        params_class="comfy.ldm.hunyuan_video.model.HunyuanVideoParams", te_attention_mask=True),
    "hunyuan-image-2.1": FamilySpec("hunyuan-image-2.1", "comfy.ldm.hunyuan_video.model.HunyuanVideo", dict(
        image_model="hunyuan_video", in_channels=64, out_channels=64, vec_in_dim=None, context_in_dim=64,
        hidden_size=128, mlp_ratio=4.0, num_heads=1, depth=1, depth_single_blocks=1, axes_dim=[64, 64],
        theta=256, patch_size=[1, 1], qkv_bias=True, guidance_embed=False, byt5=False, meanflow=False,
        use_cond_type_embedding=False, vision_in_dim=None, meanflow_sum=False), 64, latent_channels=64,
        out_layer="final_layer.linear", config_class="HunyuanImage21",
        params_class="comfy.ldm.hunyuan_video.model.HunyuanVideoParams", te_attention_mask=True),
    "cogvideox": FamilySpec("cogvideox_t2v", "comfy.ldm.cogvideo.model.CogVideoXTransformer3DModel", dict(
        image_model="cogvideox", num_attention_heads=2, attention_head_dim=32, in_channels=16, out_channels=16,
        time_embed_dim=64, text_embed_dim=64, num_layers=1, sample_width=8, sample_height=8, sample_frames=1,
        patch_size=2, max_text_seq_length=77, use_rotary_positional_embeddings=True), 64,
        out_layer="proj_out", config_class="CogVideoX_T2V"),
    "pixart-alpha": FamilySpec("pixartalpha", "comfy.ldm.pixart.pixartms.PixArtMS", dict(
        image_model="pixart_alpha", input_size=16, patch_size=2, in_channels=4, hidden_size=96, depth=1, num_heads=1,
        caption_channels=64, model_max_length=77, micro_condition=True), 64,
        latent_channels=4, out_layer="final_layer.linear", config_class="PixArtAlpha", resolution=384),
}
FAMILIES.update(NEW_FAMILIES)


def load_model(family: str, unet_name: str):
    """The family's MODEL: through the host's UNETLoader where the host reads the widths from the file;
    built from the config class where it fixes them (the 2025-10 host's Flux and SD3 detection reads
    no widths). Returns (MODEL, how it was loaded)."""
    import nodes
    spec = FAMILIES[family]
    if not spec.config_class:
        try:
            with torch.inference_mode():
                return nodes.UNETLoader().load_unet(unet_name, "default")[0], "UNETLoader"
        except RuntimeError as exc:
            if "size mismatch" not in str(exc):
                raise
    return config_built_model(family), "config"


def config_built_model(family: str, seed: int = 0, **unet_config):
    """A MODEL (ModelPatcher) of a config-built family: the host's supported_models config with the
    tiny unet_config (``unet_config`` overriding entries of it, e.g. more blocks), its model_base class, random
    weights; the host's model_sampling/extra_conds."""
    import comfy.model_management as mm
    import comfy.model_patcher
    spec = FAMILIES[family]
    config = _config(family)
    config.unet_config.update(unet_config)
    config.set_inference_dtype(torch.float32, None)
    model = config.get_model({})
    _init_tiny(model.diffusion_model, seed)
    with torch.no_grad():
        model.diffusion_model.get_submodule(spec.out_layer).weight.mul_(0.1)
    return comfy.model_patcher.ModelPatcher(model, load_device=mm.get_torch_device(),
                                            offload_device=mm.unet_offload_device())


def _config(family: str):
    """The family's supported_models config with the tiny unet_config; where the class fixes widths in its
    unet_extra_config (Ideogram 4's heads, JoyImage's rope), the tiny spec's own values win."""
    import comfy.supported_models as sm
    spec = FAMILIES[family]
    kwargs = host_kwargs(family)
    config = getattr(sm, spec.config_class or spec.host_class)(kwargs)
    if family in NEW_FAMILIES:
        config.unet_config.update({k: v for k, v in kwargs.items() if k in config.unet_extra_config})
    return config


def _init_tiny(model: torch.nn.Module, seed: int) -> None:
    """Seeded random weights; every normalisation layer's scale (the families bring their own RMSNorm
    classes, which the generic init would zero) starts at one, so no block is silenced."""
    _seeded_init(model, seed)
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        # Buffers the host allocates with torch.empty and fills from the file (MMDiT's pos_embed) would
        # otherwise hold whatever memory held: seeded values, so the fixture is the same every time.
        for name, buf in model.named_buffers():
            if name.endswith("pos_embed") and buf.is_floating_point():
                buf.copy_(torch.randn(buf.shape, generator=gen) * 0.1)
        for sub in model.modules():
            if "Norm" in type(sub).__name__:
                for leaf, p in sub.named_parameters(recurse=False):
                    if leaf in ("weight", "scale"):
                        p.fill_(1.0)


def host_kwargs(family: str) -> dict:
    """The spec's constructor arguments this host's class takes: older hosts lack some newer options
    (e.g. the 2025-10 NextDiT has no rope_theta, its ChromaParams no txt_ids_dims) and use defaults."""
    import dataclasses
    import inspect
    spec = FAMILIES[family]
    signature = inspect.signature(_import(spec.model_class).__init__).parameters
    if family in NEW_FAMILIES and any(p.kind is p.VAR_KEYWORD for p in signature.values()) and not spec.params_class:
        return dict(spec.kwargs)      # read further down (LTX-2's connector widths)
    names = set(signature)
    if spec.params_class:
        params = _import(spec.params_class)
        names |= ({f.name for f in dataclasses.fields(params)} if dataclasses.is_dataclass(params)
                  else set(inspect.signature(params.__init__).parameters))
    return {k: v for k, v in spec.kwargs.items() if k in names}


def _import(path: str):
    module, _, name = path.rpartition(".")
    import importlib
    return getattr(importlib.import_module(module), name)


def available(family: str) -> str | None:
    """None when this host can build the family, else the reason (the model class it lacks)."""
    spec = FAMILIES[family]
    try:
        _import(spec.model_class)
        for name in filter(None, (spec.config_class, spec.host_class)):
            _import("comfy.supported_models." + name)
    except (ImportError, AttributeError):
        return (f"this ComfyUI has no {spec.model_class} / supported_models."
                f"{spec.config_class or spec.host_class} (family {family})")
    return None


def diffusion_model_state_dict(family: str, seed: int = 0) -> dict[str, torch.Tensor]:
    import comfy.ops
    spec = FAMILIES[family]
    cls = _import(spec.model_class)
    torch.manual_seed(seed)
    model = cls(**host_kwargs(family), dtype=torch.float32, device="cpu", operations=comfy.ops.disable_weight_init)
    _init_tiny(model, seed)
    if spec.out_layer:
        with torch.no_grad():
            model.get_submodule(spec.out_layer).weight.mul_(0.1)
    return {k: v.contiguous() for k, v in model.state_dict().items()}


def tiny_vae_state_dict(latent_channels: int = 16, seed: int = 1) -> dict[str, torch.Tensor]:
    """A TAESD-layout VAE with the family's latent channels (VAELoader detects the channels)."""
    from comfy.taesd.taesd import TAESD
    vae = TAESD(latent_channels=latent_channels)
    _seeded_init(vae, seed)
    with torch.no_grad():
        vae.vae_scale.fill_(1.0)
        vae.vae_shift.fill_(0.0)
    return vae.state_dict()


def _write(path: Path, sd: dict, meta: dict) -> Path:
    from safetensors.torch import save
    return atomic_write_bytes(path, save({k: v.contiguous() for k, v in sd.items()}, meta))


@dataclass(frozen=True)
class FamilyAssets:
    family: str
    unet_name: str     # as UNETLoader lists it
    vae_name: str      # as VAELoader lists it


def ensure_family_assets(family: str, cache_dir: str | Path) -> FamilyAssets:
    """Write the family's tiny diffusion model and VAE once per cache dir; register the folders."""
    import folder_paths
    from ..host import COMFYUI_ROOT
    # Files are built by this host's classes (key names differ between hosts, e.g. RMSNorm scale/weight),
    # so each host gets its own folder.
    host_id = hashlib.sha256(str(Path(COMFYUI_ROOT).resolve()).encode()).hexdigest()[:8]
    cache_dir = Path(cache_dir) / f"families-{host_id}"
    spec = FAMILIES[family]
    unet_dir, vae_dir = cache_dir / "diffusion_models", cache_dir / "vae"
    unet = unet_dir / f"kiln-tiny-{family}.safetensors"
    vae = vae_dir / f"kiln-tiny-taesd{spec.latent_channels}.safetensors"
    # The stamp covers the spec, so editing a fixture's widths rebuilds its file.
    stamp = hashlib.sha256(f"{FAMILY_FIXTURE_VERSION}|{spec!r}".encode()).hexdigest()[:16]
    if not spec.config_class and (not unet.is_file() or _meta(unet).get("kiln_fixture") != stamp):
        _write(unet, diffusion_model_state_dict(family), {"kiln_fixture": stamp})
    import comfy.taesd.taesd as taesd
    if spec.latent_channels == 128 and hasattr(taesd, "DecoderFlux2"):
        # FLUX.2's TAE packs 32 channels 2x2 into 128; the host's VAELoader builds it as "taef2" from a
        # taef2_encoder/_decoder pair in vae_approx (a single file would be read as 32 channels). A host without
        # FLUX.2's TAE (2025-10: LTX-Video's 128 channels) reads one TAESD file with 128 channels.
        approx = cache_dir / "vae_approx"
        sd = tiny_vae_state_dict(128)
        for part in ("encoder", "decoder"):
            path = approx / f"taef2_{part}.safetensors"
            if not path.is_file() or _meta(path).get("kiln_fixture") != FAMILY_FIXTURE_VERSION:
                _write(path, {k[len(f"taesd_{part}."):]: v for k, v in sd.items() if k.startswith(f"taesd_{part}.")},
                       {"kiln_fixture": FAMILY_FIXTURE_VERSION})
        folder_paths.add_model_folder_path("vae_approx", str(approx), is_default=True)
        folder_paths.add_model_folder_path("diffusion_models", str(unet_dir), is_default=True)
        return FamilyAssets(family, unet.name, "taef2")
    if spec.latent_channels == 3:
        # Pixel-space families (Chroma Radiance, HiDream-O1) take images as they are: the host's "pixel_space" VAE.
        return FamilyAssets(family, unet.name, "pixel_space")
    if not vae.is_file() or _meta(vae).get("kiln_fixture") != FAMILY_FIXTURE_VERSION:
        _write(vae, tiny_vae_state_dict(spec.latent_channels), {"kiln_fixture": FAMILY_FIXTURE_VERSION})
    folder_paths.add_model_folder_path("diffusion_models", str(unet_dir), is_default=True)
    folder_paths.add_model_folder_path("vae", str(vae_dir), is_default=True)
    return FamilyAssets(family, unet.name, vae.name)


def _meta(path: Path) -> dict:
    from safetensors import safe_open
    with safe_open(str(path), "pt") as f:
        return f.metadata() or {}


def tiny_text_encoder(family: str, seed: int = 2, cache_dir: str | Path | None = None):
    """A ``comfy.sd.CLIP`` from the host's CLIP text-model class, widths matching the tiny model; for a
    family with a clip_type, the host's CLIPLoader of that type on a random CLIP-L file in ``cache_dir``."""
    import comfy.sd
    import comfy.sd1_clip as sd1_clip
    spec = FAMILIES[family]
    if spec.own_text_encoder:
        return real_text_encoder(spec.own_text_encoder)
    if spec.clip_type:
        import nodes
        if cache_dir is None:
            raise ValueError(f"tiny_text_encoder({family!r}) loads a CLIP-L file: pass cache_dir")
        ensure_clip_l_file(cache_dir)
        with torch.inference_mode():
            return nodes.CLIPLoader().load_clip(CLIP_L_FILE, spec.clip_type)[0]
    width = spec.context_dim
    config = {"architectures": ["CLIPTextModel"], "attention_dropout": 0.0, "bos_token_id": 0,
              "dropout": 0.0, "eos_token_id": 49407, "hidden_act": "quick_gelu", "hidden_size": width,
              "initializer_factor": 1.0, "initializer_range": 0.02, "intermediate_size": 2 * width,
              "layer_norm_eps": 1e-05, "max_position_embeddings": 77, "model_type": "clip_text_model",
              "num_attention_heads": 2, "num_hidden_layers": 1, "pad_token_id": 1,
              "projection_dim": width, "torch_dtype": "float32", "vocab_size": 49408}

    class Target:
        params = {}
        clip = functools.partial(sd1_clip.SD1ClipModel, clip_model=sd1_clip.SDClipModel,
                                 textmodel_json_config=config, enable_attention_masks=spec.te_attention_mask,
                                 return_attention_masks=spec.te_attention_mask)
        tokenizer = sd1_clip.SD1Tokenizer

    clip = comfy.sd.CLIP(target=Target(), embedding_directory=None, model_options={"dtype": torch.float32})
    with torch.no_grad():
        _seeded_init(clip.cond_stage_model, seed)
    return clip


# The shipped train_then_sample_sd3 workflow loads with the host's own loaders only: UNETLoader (a tiny
# MMDiT reading SD3's real text widths: 4096 context, 2048 pooled), CLIPLoader type "sd3" with a CLIP-L
# file (the host pads CLIP-L's output to those widths when CLIP-G and T5 are absent) and VAELoader.
SD3_WORKFLOW_UNET = "kiln-tiny-sd3-te.safetensors"
SD3_WORKFLOW_CLIP = "kiln-tiny-clip-l.safetensors"
SD3_WORKFLOW_VAE = "kiln-tiny-taesd16.safetensors"


def ensure_sd3_workflow_assets(cache_dir: str | Path) -> None:
    """Write (once) and register the files train_then_sample_sd3.json names."""
    import folder_paths
    from .fixtures import clip_l_state_dict
    cache_dir = Path(cache_dir) / "sd3-workflow"
    spec = FAMILIES["sd3"]
    kwargs = dict(spec.kwargs, adm_in_channels=2048, context_embedder_config={
        "target": "torch.nn.Linear", "params": {"in_features": 4096, "out_features": 128}})
    stamp = hashlib.sha256(f"{FAMILY_FIXTURE_VERSION}|{kwargs!r}".encode()).hexdigest()[:16]
    unet = cache_dir / "diffusion_models" / SD3_WORKFLOW_UNET
    if not unet.is_file() or _meta(unet).get("kiln_fixture") != stamp:
        import comfy.ops
        model = _import(spec.model_class)(**kwargs, dtype=torch.float32, device="cpu",
                                          operations=comfy.ops.disable_weight_init)
        _init_tiny(model, 0)
        with torch.no_grad():
            model.get_submodule(spec.out_layer).weight.mul_(0.1)
        _write(unet, model.state_dict(), {"kiln_fixture": stamp})
    clip = cache_dir / "text_encoders" / SD3_WORKFLOW_CLIP
    if not clip.is_file() or _meta(clip).get("kiln_fixture") != FAMILY_FIXTURE_VERSION:
        prefix = "cond_stage_model.transformer."
        sd = {k[len(prefix):]: v.half() if v.is_floating_point() else v for k, v in clip_l_state_dict().items()}
        _write(clip, sd, {"kiln_fixture": FAMILY_FIXTURE_VERSION})
    vae = cache_dir / "vae" / SD3_WORKFLOW_VAE
    if not vae.is_file() or _meta(vae).get("kiln_fixture") != FAMILY_FIXTURE_VERSION:
        _write(vae, tiny_vae_state_dict(16), {"kiln_fixture": FAMILY_FIXTURE_VERSION})
    for kind, folder in (("diffusion_models", unet.parent), ("text_encoders", clip.parent), ("vae", vae.parent)):
        folder_paths.add_model_folder_path(kind, str(folder), is_default=True)


# --- Files for the shipped family workflows (train_then_sample_<family>.json) ------------------------------
# Those graphs load with the host's own loader nodes. Two host facts shape the files:
#  * The text-encoder loaders build T5-XXL / UMT5-XXL (and Qwen2.5-VL-7B, Qwen3-4B) from fixed configs
#    (comfy/text_encoders/*_config_xxl.json, llama.py's dataclasses); detection reads only a few keys (T5:
#    block 23's wi_1 with 10240 rows). The nodes pass no config, but the host's SDClipModel reads a
#    per-encoder override from model_options["<name>_model_config"]: tests pass a shrunken config through
#    that option (tiny_text_encoder_configs) and everything else is the node's own path.
#  * The 2026 host reads the Flux widths from the file, and a Wan file's {"transformer": {...}} "config"
#    metadata (text_dim); the 2025-10 host fixes both, so these graphs run on the 2026 host.
# Qwen-Image and Z-Image have no such way: detection fixes their widths (Qwen-Image 3072, Z-Image 3840
# with its two refiner stacks: 380M and 908M parameters with one block), and Z-Image's Qwen3-4B is
# detected by a 2560 width, whose 151936-row embedding alone is 389M parameters.

# Detection needs T5-XXL's 24 blocks and its 10240-wide gated FFN; the width the diffusion model reads is
# d_model, which can be anything.
TINY_T5_CONFIG = {"d_model": 16, "d_kv": 8, "num_heads": 2, "num_layers": 24, "d_ff": 10240}
# UMT5 (Wan) as T5, with the vocabulary of the host's own SentencePiece file (t5_pile_tokenizer, 32000
# pieces), which the file carries as "spiece_model" as the real umt5 files do.
TINY_UMT5_CONFIG = dict(TINY_T5_CONFIG, vocab_size=32128)
TEXT_ENCODER_CONFIGS = {"t5xxl": TINY_T5_CONFIG, "umt5xxl": TINY_UMT5_CONFIG}

FLUX_WORKFLOW_UNET = "kiln-tiny-flux1-dev-te.safetensors"
WAN_WORKFLOW_UNET = "kiln-tiny-wan-te.safetensors"
CLIP_L_FILE = "kiln-tiny-clip-l.safetensors"
T5_FILE = "kiln-tiny-t5xxl.safetensors"
UMT5_FILE = "kiln-tiny-umt5xxl.safetensors"


def tiny_text_encoder_configs():
    """A context in which the host's comfy.sd.load_clip (what CLIPLoader / DualCLIPLoader call) builds
    T5-XXL and UMT5-XXL from TEXT_ENCODER_CONFIGS, through the host's own config-override option."""
    import contextlib
    import comfy.sd

    @contextlib.contextmanager
    def patched():
        real = comfy.sd.load_clip

        def load_clip(ckpt_paths, embedding_directory=None, clip_type=comfy.sd.CLIPType.STABLE_DIFFUSION,
                      model_options={}, *args, **kwargs):
            options = dict(model_options)
            for name, config in TEXT_ENCODER_CONFIGS.items():
                options.setdefault(f"{name}_model_config", dict(config))
            return real(ckpt_paths, embedding_directory, clip_type, options, *args, **kwargs)
        comfy.sd.load_clip = load_clip
        try:
            yield
        finally:
            comfy.sd.load_clip = real
    return patched()


def tiny_t5_state_dict(umt5: bool, seed: int = 3) -> dict[str, torch.Tensor]:
    """T5-XXL (Flux, SD3) or UMT5-XXL (Wan) keys as the real files have them, at TINY_*_CONFIG widths."""
    import json
    import comfy.ops
    from comfy.text_encoders.t5 import T5
    from ..host import COMFYUI_ROOT
    name = "umt5_config_xxl.json" if umt5 else "t5_config_xxl.json"
    config = json.loads((Path(COMFYUI_ROOT) / "comfy" / "text_encoders" / name).read_text())
    config.update(TINY_UMT5_CONFIG if umt5 else TINY_T5_CONFIG)
    model = T5(config, torch.float32, "cpu", comfy.ops.disable_weight_init)
    _init_tiny(model, seed)
    sd = {k: v.half() for k, v in model.state_dict().items()}
    if umt5:
        spiece = Path(COMFYUI_ROOT) / "comfy" / "text_encoders" / "t5_pile_tokenizer" / "tokenizer.model"
        sd["spiece_model"] = torch.frombuffer(bytearray(spiece.read_bytes()), dtype=torch.uint8)
    return sd


def _workflow_unet(family: str, **overrides) -> tuple[dict, dict]:
    """The family's tiny diffusion model with the text widths the workflow's encoders give."""
    import comfy.ops
    spec = FAMILIES[family]
    kwargs = dict(host_kwargs(family), **overrides)
    model = _import(spec.model_class)(**kwargs, dtype=torch.float32, device="cpu",
                                      operations=comfy.ops.disable_weight_init)
    _init_tiny(model, 0)
    with torch.no_grad():
        model.get_submodule(spec.out_layer).weight.mul_(0.1)
    return model.state_dict(), kwargs


def ensure_family_workflow_assets(family: str, cache_dir: str | Path) -> None:
    """Write (once) and register the files train_then_sample_<family>.json names (flux1-dev or wan)."""
    import json
    import folder_paths
    from .fixtures import clip_l_state_dict
    cache_dir = Path(cache_dir) / f"{family}-workflow"
    width = TINY_T5_CONFIG["d_model"]
    if family == "flux1-dev":
        # Flux reads T5's hidden states (context) and CLIP-L's pooled vector (768).
        name, overrides, meta, encoders = FLUX_WORKFLOW_UNET, {"context_in_dim": width, "vec_in_dim": 768}, {}, \
            {CLIP_L_FILE: None, T5_FILE: False}
    elif family == "wan":
        # The host reads text_dim from the file's "config" metadata, as it does for the real Wan files.
        name, overrides, encoders = WAN_WORKFLOW_UNET, {"text_dim": width}, {UMT5_FILE: True}
        meta = {"config": json.dumps({"transformer": {"text_dim": width}})}
    else:
        raise ValueError(f"no shipped workflow for family {family!r}")
    stamp = hashlib.sha256(f"{FAMILY_FIXTURE_VERSION}|{family}|{overrides!r}|{TEXT_ENCODER_CONFIGS!r}".encode()
                           ).hexdigest()[:16]
    unet = cache_dir / "diffusion_models" / name
    if not unet.is_file() or _meta(unet).get("kiln_fixture") != stamp:
        _write(unet, _workflow_unet(family, **overrides)[0], {"kiln_fixture": stamp, **meta})
    te_dir = cache_dir / "text_encoders"
    for file, umt5 in encoders.items():
        path = te_dir / file
        if not path.is_file() or _meta(path).get("kiln_fixture") != stamp:
            if umt5 is None:
                prefix = "cond_stage_model.transformer."
                sd = {k[len(prefix):]: v.half() if v.is_floating_point() else v
                      for k, v in clip_l_state_dict().items()}
            else:
                sd = tiny_t5_state_dict(umt5)
            _write(path, sd, {"kiln_fixture": stamp})
    vae = cache_dir / "vae" / SD3_WORKFLOW_VAE
    if not vae.is_file() or _meta(vae).get("kiln_fixture") != FAMILY_FIXTURE_VERSION:
        _write(vae, tiny_vae_state_dict(16), {"kiln_fixture": FAMILY_FIXTURE_VERSION})
    for kind, folder in (("diffusion_models", unet.parent), ("text_encoders", te_dir), ("vae", vae.parent)):
        folder_paths.add_model_folder_path(kind, str(folder), is_default=True)


def ensure_clip_l_file(cache_dir: str | Path) -> str:
    """A random full-size CLIP-L text encoder as CLIPLoader lists it (written once; the host leaves layers
    a smaller file lacks uninitialised, so it is complete)."""
    import folder_paths
    from .fixtures import clip_l_state_dict
    folder = Path(cache_dir) / "text-encoders"
    path = folder / CLIP_L_FILE
    if not path.is_file() or _meta(path).get("kiln_fixture") != FAMILY_FIXTURE_VERSION:
        prefix = "cond_stage_model.transformer."
        sd = {k[len(prefix):]: v.half() if v.is_floating_point() else v for k, v in clip_l_state_dict().items()}
        # A text-encoder file carries the pooled output's projection (the checkpoint's CLIP does not); without
        # it the host leaves that layer uninitialised memory, and the pooled vector (SD3's, HiDream's) is
        # whatever the memory held: NaN after some other tests.
        sd["text_projection.weight"] = torch.eye(768, dtype=torch.float16)
        _write(path, sd, {"kiln_fixture": FAMILY_FIXTURE_VERSION})
    folder_paths.add_model_folder_path("text_encoders", str(folder), is_default=True)
    return CLIP_L_FILE


# --- The families' own text encoders and video VAE, tiny ----------------------------------------------------------
# The settings matrix (tests/test_family_matrix_host.py) trains each family's real text-encoder class where it is
# small enough to build: T5-XXL for Chroma (the host's PixArt/Chroma T5 wrapper), UMT5-XXL for Wan, Qwen3-4B for
# Z-Image, each with a shrunken config through the host's own "<name>_model_config" option, and a Wan 2.1 VAE (the
# video VAE Wan and Qwen-Image use; the host reads its width from the file) through VAELoader.
# name -> (module, TE class factory, tokenizer class, model_config name, config, needs the SentencePiece data)
REAL_TEXT_ENCODERS = {
    "chroma": ("comfy.text_encoders.pixart_t5", "pixart_te", "PixArtTokenizer", "t5xxl",
               {"d_model": 64, "d_kv": 16, "num_heads": 2, "num_layers": 2, "d_ff": 128}, False),
    "wan": ("comfy.text_encoders.wan", "te", "WanT5Tokenizer", "umt5xxl",
            {"d_model": 64, "d_kv": 16, "num_heads": 2, "num_layers": 2, "d_ff": 128, "vocab_size": 32128}, True),
    "wan2.2-5b": ("comfy.text_encoders.wan", "te", "WanT5Tokenizer", "umt5xxl",
                  {"d_model": 64, "d_kv": 16, "num_heads": 2, "num_layers": 2, "d_ff": 128, "vocab_size": 32128}, True),
    "z-image": ("comfy.text_encoders.z_image", "te", "ZImageTokenizer", "qwen3_4b",
                {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 3, "num_attention_heads": 2,
                 "num_key_value_heads": 1}, False),
    # HunyuanDiT reads its Chinese BERT states and mT5's (with their masks): the host's HyditModel, both tiny. Its mT5
    # tokenizer is SentencePiece data the host does not ship; the T5 pile model stands in (tokenizer_data key).
    "hunyuan-dit": ("comfy.text_encoders.hydit", "HyditModel", "HyditTokenizer", ("hydit_clip", "mt5xl"),
                    ({"hidden_size": 64, "intermediate_size": 128, "num_attention_heads": 2, "num_hidden_layers": 1},
                     {"d_model": 64, "d_kv": 16, "num_heads": 2, "num_layers": 1, "d_ff": 128, "vocab_size": 32128}),
                    "mt5xl.spiece_model"),
    # HiDream-O1's text encoder is its tokenizer (no weights): the class itself, no config.
    "hidream-o1": ("comfy.text_encoders.hidream_o1", "HiDreamO1TE", "HiDreamO1Tokenizer", "hidream_o1", {}, False),
    # OmniGen2 ropes its caption by token count, so it reads the unpadded Qwen2.5-VL states only its own encoder gives.
    "omnigen2": ("comfy.text_encoders.omnigen2", "te", "Omnigen2Tokenizer", "qwen25_3b",
                 {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 2,
                  "num_key_value_heads": 1}, False),
    # Qwen-Image(-Edit)'s Qwen2.5-VL-7B with its vision tower (llama.Qwen25_7BVLI): what TextEncodeQwenImageEditPlus
    # shows the control images to. Its 64-wide states are what the tiny Qwen-Image model reads (joint_attention_dim).
    "qwen-image-edit": ("comfy.text_encoders.qwen_image", "te", "QwenImageTokenizer", "qwen25_7b",
                        {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
                         "num_attention_heads": 2, "num_key_value_heads": 1}, False),
}

# Qwen25_7BVLI builds its vision tower at fixed widths (1280 wide, 32 blocks: 660M parameters) that no config option
# reaches; the host's own Qwen2VLVisionTransformer at these widths stands in while the encoder is built.
TINY_VISION_TOWER = {"hidden_size": 32, "intermediate_size": 64, "num_heads": 2, "num_layers": 2}


@contextlib.contextmanager
def _tiny_vision_tower():
    try:
        from comfy.text_encoders import qwen_vl
    except ImportError:     # a host without Qwen2.5-VL: nothing to shrink
        yield
        return
    real = qwen_vl.Qwen2VLVisionTransformer

    def tiny(*args, **kwargs):
        return real(*args, **{**kwargs, **TINY_VISION_TOWER})
    qwen_vl.Qwen2VLVisionTransformer = tiny
    try:
        yield
    finally:
        qwen_vl.Qwen2VLVisionTransformer = real


def real_text_encoder(family: str, seed: int = 4):
    """The family's own text-encoder class (see REAL_TEXT_ENCODERS), tiny, random, as a ``comfy.sd.CLIP``; None
    where this host lacks the class."""
    import importlib
    import comfy.sd
    from ..host import COMFYUI_ROOT
    module_name, factory, tokenizer, name, config, spiece = REAL_TEXT_ENCODERS[family]
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        return None
    tokenizer_data = {}
    if spiece:      # True, or the tokenizer_data key the host's tokenizer reads it from
        path = Path(COMFYUI_ROOT) / "comfy" / "text_encoders" / "t5_pile_tokenizer" / "tokenizer.model"
        tokenizer_data["spiece_model" if spiece is True else spiece] = torch.frombuffer(
            bytearray(path.read_bytes()), dtype=torch.uint8)
    # one encoder (name, config), or several (names, configs) as in HunyuanDiT's pair
    names, configs = ((name,), (config,)) if isinstance(name, str) else (name, config)

    te_class, tokenizer_class = getattr(module, factory), getattr(module, tokenizer)
    if not isinstance(te_class, type):      # a factory (te()) giving the class
        te_class = te_class()

    class Target:
        params = {}
        clip = te_class
        tokenizer = tokenizer_class

    with _tiny_vision_tower():
        clip = comfy.sd.CLIP(target=Target(), embedding_directory=None, tokenizer_data=tokenizer_data,
                             model_options={**{f"{n}_model_config": dict(c) for n, c in zip(names, configs)},
                                            "dtype": torch.float32})
    _init_tiny(clip.cond_stage_model, seed)
    return clip


WAN_VAE_FILE = "kiln-tiny-wan21-vae.safetensors"


def ensure_wan_vae(cache_dir: str | Path) -> str:
    """A tiny Wan 2.1 VAE (16 latent channels, 8x spatial, 4x temporal: a video VAE) as VAELoader lists it."""
    import folder_paths
    from comfy.ldm.wan.vae import WanVAE
    folder = Path(cache_dir) / "video-vae"
    path = folder / WAN_VAE_FILE
    stamp = f"{FAMILY_FIXTURE_VERSION}-wan21-dim8"
    if not path.is_file() or _meta(path).get("kiln_fixture") != stamp:
        vae = WanVAE(dim=8, z_dim=16, dim_mult=[1, 2, 4, 4], num_res_blocks=2, attn_scales=[],
                     temperal_downsample=[False, True, True])
        _init_tiny(vae, 5)
        _write(path, vae.state_dict(), {"kiln_fixture": stamp})
    folder_paths.add_model_folder_path("vae", str(folder), is_default=True)
    return WAN_VAE_FILE


def load_model_as(family: str, unet_name: str, weight_dtype: torch.dtype | None):
    """The family's MODEL with its weights stored as ``weight_dtype`` (bf16, fp8; None: as built), through the
    host's own loading (comfy.sd.load_diffusion_model with the dtype option UNETLoader's weight_dtype sets, or the
    config class with that inference dtype), computing in fp32 on CPU as the host decides."""
    if weight_dtype is None:
        return load_model(family, unet_name)[0]
    spec = FAMILIES[family]
    if not spec.config_class:
        import comfy.sd
        import folder_paths
        try:
            with torch.inference_mode():
                return comfy.sd.load_diffusion_model(folder_paths.get_full_path_or_raise("diffusion_models", unet_name),
                                                     model_options={"dtype": weight_dtype})
        except RuntimeError as exc:
            if "size mismatch" not in str(exc):
                raise
    import comfy.model_management as mm
    import comfy.model_patcher
    reference = config_built_model(family).model.diffusion_model.state_dict()
    config = _config(family)
    config.set_inference_dtype(weight_dtype, torch.float32)
    model = config.get_model({})
    with torch.no_grad():
        for key, value in model.diffusion_model.state_dict().items():
            value.copy_(reference[key].to(value.dtype))
    return comfy.model_patcher.ModelPatcher(model, load_device=mm.get_torch_device(),
                                            offload_device=mm.unet_offload_device())
