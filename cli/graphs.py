"""The shipped example graphs, compactly: widgets not given take the node defaults.

Each graph is a list of nodes, then its ComfyUI groups (laid out left to right) and a Note saying what to
change first; make_workflows places the nodes so that none overlaps another."""

TINY = "kiln-tiny-sd15.safetensors"

TRAIN_THEN_SAMPLE = [
    {"id": "ckpt", "type": "CheckpointLoaderSimple", "widgets": {"ckpt_name": TINY}},
    {"id": "data", "type": "KilnLoadDataset", "widgets": {"path": "kiln_demo_dataset", "resolution": 64,
                                                          "min_bucket_reso": 64, "max_bucket_reso": 128,
                                                          "bucket_reso_steps": 64}},
    {"id": "net", "type": "KilnNetworkConfig", "widgets": {"rank": 8, "alpha": 8.0}},
    {"id": "opt", "type": "KilnOptimizerConfig", "widgets": {"learning_rate": 1e-3, "scheduler": "constant"}},
    {"id": "prompts", "type": "KilnSamplePrompts",
     "widgets": {"prompts": "kiln shapes, red circle --d 7\nkiln shapes, blue square --d 8", "width": 64, "height": 64,
                 "steps": 8, "cfg": 4.0}},
    {"id": "train", "type": "KilnTrainLora", "title": "Kiln Train LoRA (tiny demo)",
     "widgets": {"output_name": "kiln_demo", "epochs": 1, "max_steps": 30, "seed": 0, "sample_every_n_steps": 10},
     "inputs": {"model": ("ckpt", 0), "clip": ("ckpt", 1), "vae": ("ckpt", 2), "dataset": ("data", 0),
                "network": ("net", 0), "optimizer": ("opt", 0), "sample_prompts": ("prompts", 0)}},
    {"id": "save", "type": "KilnSaveLora", "widgets": {"filename": "kiln_demo"}, "inputs": {"lora": ("train", 2)}},
    {"id": "loss_png", "type": "SaveImage", "widgets": {"filename_prefix": "kiln_demo_loss"},
     "inputs": {"images": ("train", 4)}},
    {"id": "pos", "type": "CLIPTextEncode", "widgets": {"text": "kiln shapes, red circle"}, "inputs": {"clip": ("ckpt", 1)}},
    {"id": "neg", "type": "CLIPTextEncode", "widgets": {"text": ""}, "inputs": {"clip": ("ckpt", 1)}},
    {"id": "latent", "type": "EmptyLatentImage", "widgets": {"width": 64, "height": 64, "batch_size": 1}},
    {"id": "ks_base", "type": "KSampler", "title": "KSampler (base model)",
     "widgets": {"seed": 42, "steps": 10, "cfg": 4.0, "sampler_name": "euler", "scheduler": "normal"},
     "inputs": {"model": ("ckpt", 0), "positive": ("pos", 0), "negative": ("neg", 0), "latent_image": ("latent", 0)}},
    {"id": "ks_lora", "type": "KSampler", "title": "KSampler (with the trained LoRA)",
     "widgets": {"seed": 42, "steps": 10, "cfg": 4.0, "sampler_name": "euler", "scheduler": "normal"},
     "inputs": {"model": ("train", 0), "positive": ("pos", 0), "negative": ("neg", 0), "latent_image": ("latent", 0)}},
    {"id": "dec_base", "type": "VAEDecode", "inputs": {"samples": ("ks_base", 0), "vae": ("ckpt", 2)}},
    {"id": "dec_lora", "type": "VAEDecode", "inputs": {"samples": ("ks_lora", 0), "vae": ("ckpt", 2)}},
    {"id": "png_base", "type": "SaveImage", "widgets": {"filename_prefix": "kiln_demo_base"},
     "inputs": {"images": ("dec_base", 0)}},
    {"id": "png_lora", "type": "SaveImage", "widgets": {"filename_prefix": "kiln_demo_lora"},
     "inputs": {"images": ("dec_lora", 0)}},
    {"id": "timeline", "type": "KilnSampleTimeline", "widgets": {"cell_size": 96}, "inputs": {"loss": ("train", 3)}},
    {"id": "timeline_png", "type": "SaveImage", "widgets": {"filename_prefix": "kiln_demo_timeline"},
     "inputs": {"images": ("timeline", 0)}},
]


# The same bake on an SD3-family model, loaded as diffusion model + text encoder + VAE with the host's
# own loaders: swapping the base model is rewiring these three loaders (Flux: DualCLIPLoader + UNETLoader).
TRAIN_THEN_SAMPLE_SD3 = [
    {"id": "unet", "type": "UNETLoader", "widgets": {"unet_name": "kiln-tiny-sd3-te.safetensors"}},
    {"id": "te", "type": "CLIPLoader", "widgets": {"clip_name": "kiln-tiny-clip-l.safetensors", "type": "sd3"}},
    {"id": "vae", "type": "VAELoader", "widgets": {"vae_name": "kiln-tiny-taesd16.safetensors"}},
    {"id": "data", "type": "KilnLoadDataset", "widgets": {"path": "kiln_demo_dataset", "resolution": 64,
                                                          "min_bucket_reso": 64, "max_bucket_reso": 64,
                                                          "bucket_reso_steps": 64}},
    {"id": "net", "type": "KilnNetworkConfig", "widgets": {"rank": 4, "alpha": 4.0}},
    {"id": "opt", "type": "KilnOptimizerConfig", "widgets": {"learning_rate": 2e-3, "scheduler": "constant"}},
    {"id": "train", "type": "KilnTrainLora", "title": "Kiln Train LoRA (tiny SD3 demo)",
     "widgets": {"output_name": "kiln_demo_sd3", "epochs": 1, "max_steps": 10, "seed": 0},
     "inputs": {"model": ("unet", 0), "clip": ("te", 0), "vae": ("vae", 0), "dataset": ("data", 0),
                "network": ("net", 0), "optimizer": ("opt", 0)}},
    {"id": "save", "type": "KilnSaveLora", "widgets": {"filename": "kiln_demo_sd3"}, "inputs": {"lora": ("train", 2)}},
    {"id": "loss_png", "type": "SaveImage", "widgets": {"filename_prefix": "kiln_demo_sd3_loss"},
     "inputs": {"images": ("train", 4)}},
    {"id": "pos", "type": "CLIPTextEncode", "widgets": {"text": "kiln shapes, red circle"}, "inputs": {"clip": ("te", 0)}},
    {"id": "neg", "type": "CLIPTextEncode", "widgets": {"text": ""}, "inputs": {"clip": ("te", 0)}},
    {"id": "latent", "type": "EmptySD3LatentImage", "widgets": {"width": 64, "height": 64, "batch_size": 1}},
    {"id": "ks_lora", "type": "KSampler", "title": "KSampler (with the trained LoRA)",
     "widgets": {"seed": 42, "steps": 8, "cfg": 4.0, "sampler_name": "euler", "scheduler": "simple"},
     "inputs": {"model": ("train", 0), "positive": ("pos", 0), "negative": ("neg", 0), "latent_image": ("latent", 0)}},
    {"id": "dec_lora", "type": "VAEDecode", "inputs": {"samples": ("ks_lora", 0), "vae": ("vae", 0)}},
    {"id": "png_lora", "type": "SaveImage", "widgets": {"filename_prefix": "kiln_demo_sd3_lora"},
     "inputs": {"images": ("dec_lora", 0)}},
]



def _family_graph(tag: str, loaders: list[dict], latent: dict, guidance: float | None, cfg: float,
                  outs=(("unet", 0), ("te", 0), ("vae", 0)), real: dict | None = None) -> list[dict]:
    """train_then_sample on a model family: the family's own loader nodes (``outs``: where MODEL, CLIP and
    VAE come from), the bake, and a sample with the trained LoRA using the family's own latent node and
    sampling settings. Without ``real`` it is a tiny demo the tests run; with it, a template for the real
    model (``real``: resolution, sample steps, scheduler)."""
    model, te, vae = outs
    name = f"kiln_{tag}" if real else f"kiln_demo_{tag}"
    size = real["resolution"] if real else 64
    pos = ("guidance", 0) if guidance is not None else ("pos", 0)
    if real:
        # A real model: the dataset's folder, ten epochs at the family's resolution, adapters at Kiln's
        # defaults; checkpointing on, since these models fill a 24 GB card otherwise.
        data = {"path": "my_dataset", "resolution": size}
        net, opt = {}, {}
        train = {"output_name": name, "epochs": 10, "max_steps": 0, "seed": 0, "gradient_checkpointing": True}
        title = f"Kiln Train LoRA ({tag})"
    else:
        data = {"path": "kiln_demo_dataset", "resolution": 64, "min_bucket_reso": 64, "max_bucket_reso": 64,
                "bucket_reso_steps": 64}
        net, opt = {"rank": 4, "alpha": 4.0}, {"learning_rate": 2e-3, "scheduler": "constant"}
        train = {"output_name": name, "epochs": 1, "max_steps": 10, "seed": 0}
        title = f"Kiln Train LoRA (tiny {tag} demo)"
    graph = loaders + [
        {"id": "data", "type": "KilnLoadDataset", "widgets": data},
        {"id": "net", "type": "KilnNetworkConfig", "widgets": net},
        {"id": "opt", "type": "KilnOptimizerConfig", "widgets": opt},
        {"id": "train", "type": "KilnTrainLora", "title": title, "widgets": train,
         "inputs": {"model": model, "clip": te, "vae": vae, "dataset": ("data", 0),
                    "network": ("net", 0), "optimizer": ("opt", 0)}},
        {"id": "save", "type": "KilnSaveLora", "widgets": {"filename": name}, "inputs": {"lora": ("train", 2)}},
        {"id": "loss_png", "type": "SaveImage", "widgets": {"filename_prefix": f"{name}_loss"},
         "inputs": {"images": ("train", 4)}},
        {"id": "pos", "type": "CLIPTextEncode",
         "widgets": {"text": "your trigger word, a photo of ..." if real else "kiln shapes, red circle"},
         "inputs": {"clip": te}},
        {"id": "neg", "type": "CLIPTextEncode", "widgets": {"text": ""}, "inputs": {"clip": te}},
        dict(latent, id="latent"),
        {"id": "ks_lora", "type": "KSampler", "title": "KSampler (with the trained LoRA)",
         "widgets": {"seed": 42, "steps": real["steps"] if real else 8, "cfg": cfg, "sampler_name": "euler",
                     "scheduler": real["scheduler"] if real else "simple"},
         "inputs": {"model": ("train", 0), "positive": pos, "negative": ("neg", 0),
                    "latent_image": ("latent", 0)}},
        {"id": "dec_lora", "type": "VAEDecode", "inputs": {"samples": ("ks_lora", 0), "vae": vae}},
        {"id": "png_lora", "type": "SaveImage", "widgets": {"filename_prefix": f"{name}_lora"},
         "inputs": {"images": ("dec_lora", 0)}},
    ]
    if guidance is not None:
        graph.insert(graph.index(next(n for n in graph if n["id"] == "neg")),
                     {"id": "guidance", "type": "FluxGuidance", "widgets": {"guidance": guidance},
                      "inputs": {"conditioning": ("pos", 0)}})
    return graph


# Flux.1 as its users load it: diffusion model, DualCLIPLoader (clip_l + t5xxl, type flux), the Flux VAE;
# sampled the Flux-dev way (distilled guidance 3.5 through FluxGuidance, cfg 1).
TRAIN_THEN_SAMPLE_FLUX = _family_graph("flux", [
    {"id": "unet", "type": "UNETLoader", "widgets": {"unet_name": "kiln-tiny-flux1-dev-te.safetensors"}},
    {"id": "te", "type": "DualCLIPLoader", "widgets": {"clip_name1": "kiln-tiny-clip-l.safetensors",
                                                       "clip_name2": "kiln-tiny-t5xxl.safetensors", "type": "flux"}},
    {"id": "vae", "type": "VAELoader", "widgets": {"vae_name": "kiln-tiny-taesd16.safetensors"}},
], {"type": "EmptySD3LatentImage", "widgets": {"width": 64, "height": 64, "batch_size": 1}}, 3.5, 1.0)

# Wan 2.1 text-to-image (one frame): diffusion model, CLIPLoader (umt5_xxl, type wan), the Wan VAE; the
# video latent node with length 1.
TRAIN_THEN_SAMPLE_WAN = _family_graph("wan", [
    {"id": "unet", "type": "UNETLoader", "widgets": {"unet_name": "kiln-tiny-wan-te.safetensors"}},
    {"id": "te", "type": "CLIPLoader", "widgets": {"clip_name": "kiln-tiny-umt5xxl.safetensors", "type": "wan"}},
    {"id": "vae", "type": "VAELoader", "widgets": {"vae_name": "kiln-tiny-taesd16.safetensors"}},
], {"type": "EmptyHunyuanLatentVideo", "widgets": {"width": 64, "height": 64, "length": 1,
                                                   "batch_size": 1}}, None, 5.0)

# Templates for the families whose models the host recognises only at full size (so no tiny file loads through
# their loader nodes): the file names are those of ComfyUI's own example workflows. The tests check each graph
# with the host's prompt validation (node types, inputs, links, choices); the families themselves train,
# save and sample through the host in tests/test_families_host.py.
# Qwen-Image's text encoder and VAE, as ComfyUI's example workflows load them (text-to-image and edit alike).
_QWEN_LOADERS = [
    {"id": "te", "type": "CLIPLoader",
     "widgets": {"clip_name": "qwen_2.5_vl_7b_fp8_scaled.safetensors", "type": "qwen_image"}},
    {"id": "vae", "type": "VAELoader", "widgets": {"vae_name": "qwen_image_vae.safetensors"}}]
TRAIN_QWEN_IMAGE = _family_graph("qwen_image", [
    {"id": "unet", "type": "UNETLoader",
     "widgets": {"unet_name": "qwen_image_fp8_e4m3fn.safetensors", "weight_dtype": "fp8_e4m3fn"}},
] + _QWEN_LOADERS, {"type": "EmptySD3LatentImage", "widgets": {"width": 1328, "height": 1328, "batch_size": 1}}, None, 2.5,
    real={"resolution": 1328, "steps": 20, "scheduler": "simple"})

TRAIN_Z_IMAGE = _family_graph("z_image", [
    {"id": "unet", "type": "UNETLoader", "widgets": {"unet_name": "z_image_turbo_bf16.safetensors"}},
    {"id": "te", "type": "CLIPLoader", "widgets": {"clip_name": "qwen_3_4b.safetensors", "type": "lumina2"}},
    {"id": "vae", "type": "VAELoader", "widgets": {"vae_name": "ae.safetensors"}},
], {"type": "EmptySD3LatentImage", "widgets": {"width": 1024, "height": 1024, "batch_size": 1}}, None, 1.0,
    real={"resolution": 1024, "steps": 8, "scheduler": "simple"})

TRAIN_SDXL = _family_graph("sdxl", [
    {"id": "ckpt", "type": "CheckpointLoaderSimple", "widgets": {"ckpt_name": "sd_xl_base_1.0.safetensors"}},
], {"type": "EmptyLatentImage", "widgets": {"width": 1024, "height": 1024, "batch_size": 1}}, None, 7.0,
    outs=(("ckpt", 0), ("ckpt", 1), ("ckpt", 2)), real={"resolution": 1024, "steps": 25, "scheduler": "normal"})

# Chroma as its users load it: the diffusion model, CLIPLoader (t5xxl, type chroma), the Flux VAE; sampled with real
# cfg and a negative prompt (Chroma has no distilled guidance). The host's detection fixes Chroma's modulation widths,
# so no tiny file loads through UNETLoader: a template (Chroma trains in tests/test_family_matrix_host.py).
TRAIN_CHROMA = _family_graph("chroma", [
    {"id": "unet", "type": "UNETLoader", "widgets": {"unet_name": "Chroma1-HD.safetensors"}},
    {"id": "te", "type": "CLIPLoader", "widgets": {"clip_name": "t5xxl_fp16.safetensors", "type": "chroma"}},
    {"id": "vae", "type": "VAELoader", "widgets": {"vae_name": "ae.safetensors"}},
], {"type": "EmptySD3LatentImage", "widgets": {"width": 1024, "height": 1024, "batch_size": 1}}, None, 4.0,
    real={"resolution": 1024, "steps": 26, "scheduler": "simple"})

# Video templates (issue 23). Wan 2.2 A14B as ComfyUI's own Wan 2.2 text-to-video workflow loads it: the high-noise
# and low-noise experts through two UNETLoaders, umt5_xxl (type wan), the Wan 2.1 VAE; both experts train in one bake
# (the Train node's model_low_noise), split at Wan 2.2's text-to-video boundary 0.875, each LoRA saved under its
# expert's name; the sample runs the high-noise expert for the first half of the steps and the low-noise one for
# the rest (two KSamplerAdvanced, as the host's workflow does), saved as an animated WebP.
_WAN22_SAMPLER = {"noise_seed": 42, "steps": 20, "cfg": 3.5, "sampler_name": "euler", "scheduler": "simple"}
_CLIPS = {"frame_extraction": "uniform", "target_frames": 33, "frame_sample": 2}
TRAIN_VIDEO_WAN22 = [
    {"id": "unet", "type": "UNETLoader", "title": "Load Diffusion Model (high-noise expert)",
     "widgets": {"unet_name": "wan2.2_t2v_high_noise_14B_fp8_scaled.safetensors"}},
    {"id": "unet_low", "type": "UNETLoader", "title": "Load Diffusion Model (low-noise expert)",
     "widgets": {"unet_name": "wan2.2_t2v_low_noise_14B_fp8_scaled.safetensors"}},
    {"id": "te", "type": "CLIPLoader", "widgets": {"clip_name": "umt5_xxl_fp8_e4m3fn_scaled.safetensors", "type": "wan"}},
    {"id": "vae", "type": "VAELoader", "widgets": {"vae_name": "wan_2.1_vae.safetensors"}},
    {"id": "data", "type": "KilnLoadDataset",
     "widgets": dict(_CLIPS, path="my_clips", resolution=480, target_fps=16.0)},
    {"id": "net", "type": "KilnNetworkConfig", "widgets": {}},
    {"id": "opt", "type": "KilnOptimizerConfig", "widgets": {}},
    {"id": "train", "type": "KilnTrainLora", "title": "Kiln Train LoRA (Wan 2.2 A14B, both experts)",
     "widgets": {"output_name": "kiln_wan22", "epochs": 10, "max_steps": 0, "seed": 0, "gradient_checkpointing": True,
                 "expert_boundary": 0.875},
     "inputs": {"model": ("unet", 0), "model_low_noise": ("unet_low", 0), "clip": ("te", 0), "vae": ("vae", 0),
                "dataset": ("data", 0), "network": ("net", 0), "optimizer": ("opt", 0)}},
    {"id": "save", "type": "KilnSaveLora", "widgets": {"filename": "kiln_wan22_high_noise"},
     "inputs": {"lora": ("train", 2)}},
    {"id": "save_low", "type": "KilnSaveLora", "widgets": {"filename": "kiln_wan22_low_noise"},
     "inputs": {"lora": ("train", 6)}},
    {"id": "loss_png", "type": "SaveImage", "widgets": {"filename_prefix": "kiln_wan22_loss"},
     "inputs": {"images": ("train", 4)}},
    {"id": "pos", "type": "CLIPTextEncode", "widgets": {"text": "your trigger word, a video of ..."},
     "inputs": {"clip": ("te", 0)}},
    {"id": "neg", "type": "CLIPTextEncode", "widgets": {"text": ""}, "inputs": {"clip": ("te", 0)}},
    {"id": "latent", "type": "EmptyHunyuanLatentVideo",
     "widgets": {"width": 640, "height": 640, "length": 81, "batch_size": 1}},
    {"id": "ks_lora", "type": "KSamplerAdvanced", "title": "KSampler (high-noise expert with its LoRA)",
     "widgets": dict(_WAN22_SAMPLER, add_noise="enable", start_at_step=0, end_at_step=10,
                     return_with_leftover_noise="enable"),
     "inputs": {"model": ("train", 0), "positive": ("pos", 0), "negative": ("neg", 0), "latent_image": ("latent", 0)}},
    {"id": "ks_low", "type": "KSamplerAdvanced", "title": "KSampler (low-noise expert with its LoRA)",
     "widgets": dict(_WAN22_SAMPLER, add_noise="disable", start_at_step=10, end_at_step=10000,
                     return_with_leftover_noise="disable"),
     "inputs": {"model": ("train", 5), "positive": ("pos", 0), "negative": ("neg", 0), "latent_image": ("ks_lora", 0)}},
    {"id": "dec_lora", "type": "VAEDecode", "inputs": {"samples": ("ks_low", 0), "vae": ("vae", 0)}},
    {"id": "webp_lora", "type": "SaveAnimatedWEBP",
     "widgets": {"filename_prefix": "kiln_wan22_lora", "fps": 16.0, "lossless": False, "quality": 90,
                 "method": "default"},
     "inputs": {"images": ("dec_lora", 0)}},
]

# LTX-2 as the host loads it: the checkpoint (model and video VAE), Gemma 3 through LTXAVTextEncoderLoader; clips in
# 8k+1-frame windows (LTX-2's VAE compresses time 8x) at 24 fps; trained on video (the audio latent stays empty, as
# in the host's video-only workflows); the sample is a 97-frame EmptyLTXVLatentVideo at LTX's cfg 4.
TRAIN_VIDEO_LTX2 = _family_graph("ltx2", [
    {"id": "ckpt", "type": "CheckpointLoaderSimple", "widgets": {"ckpt_name": "ltx-2-19b-dev-fp8.safetensors"}},
    {"id": "te", "type": "LTXAVTextEncoderLoader",
     "widgets": {"text_encoder": "gemma_3_12B_it_fp4_mixed.safetensors", "ckpt_name": "ltx-2-19b-dev-fp8.safetensors"}},
], {"type": "EmptyLTXVLatentVideo", "widgets": {"width": 768, "height": 512, "length": 97, "batch_size": 1}}, None, 4.0,
    outs=(("ckpt", 0), ("te", 0), ("ckpt", 2)), real={"resolution": 512, "steps": 20, "scheduler": "simple"})
next(n for n in TRAIN_VIDEO_LTX2 if n["id"] == "data")["widgets"].update(_CLIPS, path="my_clips", target_fps=24.0)
TRAIN_VIDEO_LTX2 = [dict(n, type="SaveAnimatedWEBP", id="webp_lora",
                         widgets={"filename_prefix": "kiln_ltx2_lora", "fps": 24.0, "lossless": False, "quality": 90,
                                  "method": "default"}) if n["id"] == "png_lora" else n for n in TRAIN_VIDEO_LTX2]

# Edit templates (issue 22): a paired dataset (images with their "before" in control/ beside them, matched by file
# stem, the caption the edit instruction) trains through the host's reference latents; the check samples the same
# edit of one control picture with the base model and with the trained LoRA, side by side. The control reaches the
# sampler as the host's own edit workflows pass it: ReferenceLatent on the encoded picture (Kontext, FLUX.2), or
# TextEncodeQwenImageEditPlus, which also shows it to Qwen2.5-VL (Qwen-Image-Edit 2509/2511).
EDIT_CONTROL_IMAGE = "kiln_edit_before.png"


def _edit_graph(tag: str, loaders: list[dict], latent: dict, cfg: float, resolution: int, steps: int,
                guidance: float | None = None, qwen: bool = False) -> list[dict]:
    name = f"kiln_edit_{tag}"
    te, vae = ("te", 0), ("vae", 0)
    instruction = "your edit instruction, e.g. make it a watercolor painting"
    graph = loaders + [
        # Qwen-Image-Edit's references at its own ~1 Mpx (what musubi-tuner recommends, the host node's size)
        {"id": "data", "type": "KilnLoadDataset", "widgets": {"path": "my_edit_pairs", "resolution": resolution,
                                                              "controls": "auto",
                                                              "control_resolution": "family" if qwen else "target"}},
        {"id": "net", "type": "KilnNetworkConfig", "widgets": {}},
        {"id": "opt", "type": "KilnOptimizerConfig", "widgets": {}},
        {"id": "train", "type": "KilnTrainLora", "title": f"Kiln Train LoRA (edit, {tag})",
         "widgets": {"output_name": name, "epochs": 10, "max_steps": 0, "seed": 0, "gradient_checkpointing": True},
         "inputs": {"model": ("unet", 0), "clip": te, "vae": vae, "dataset": ("data", 0), "network": ("net", 0),
                    "optimizer": ("opt", 0)}},
        {"id": "save", "type": "KilnSaveLora", "widgets": {"filename": name}, "inputs": {"lora": ("train", 2)}},
        {"id": "loss_png", "type": "SaveImage", "widgets": {"filename_prefix": f"{name}_loss"},
         "inputs": {"images": ("train", 4)}},
        {"id": "before", "type": "LoadImage", "title": "The picture to edit", "widgets": {"image": EDIT_CONTROL_IMAGE}},
        {"id": "neg", "type": "CLIPTextEncode", "widgets": {"text": ""}, "inputs": {"clip": te}},
        dict(latent, id="latent"),
    ]
    if qwen:
        graph.append({"id": "pos", "type": "TextEncodeQwenImageEditPlus", "widgets": {"prompt": instruction},
                      "inputs": {"clip": te, "vae": vae, "image1": ("before", 0)}})
        positive = ("pos", 0)
    else:
        graph += [{"id": "ref", "type": "VAEEncode", "inputs": {"pixels": ("before", 0), "vae": vae}},
                  {"id": "text", "type": "CLIPTextEncode", "widgets": {"text": instruction}, "inputs": {"clip": te}},
                  {"id": "pos", "type": "ReferenceLatent", "inputs": {"conditioning": ("text", 0), "latent": ("ref", 0)}}]
        positive = ("pos", 0)
        if guidance is not None:
            graph.append({"id": "guidance", "type": "FluxGuidance", "widgets": {"guidance": guidance},
                          "inputs": {"conditioning": ("pos", 0)}})
            positive = ("guidance", 0)
    sampler = {"seed": 42, "steps": steps, "cfg": cfg, "sampler_name": "euler", "scheduler": "simple"}
    for which, model in (("base", ("unet", 0)), ("lora", ("train", 0))):
        graph += [
            {"id": f"ks_{which}", "type": "KSampler",
             "title": "KSampler (base model)" if which == "base" else "KSampler (with the trained LoRA)",
             "widgets": sampler, "inputs": {"model": model, "positive": positive, "negative": ("neg", 0),
                                            "latent_image": ("latent", 0)}},
            {"id": f"dec_{which}", "type": "VAEDecode", "inputs": {"samples": (f"ks_{which}", 0), "vae": vae}},
            {"id": f"png_{which}", "type": "SaveImage", "widgets": {"filename_prefix": f"{name}_{which}"},
             "inputs": {"images": (f"dec_{which}", 0)}}]
    return graph


_FLUX_LOADERS = [
    {"id": "te", "type": "DualCLIPLoader", "widgets": {"clip_name1": "clip_l.safetensors",
                                                       "clip_name2": "t5xxl_fp16.safetensors", "type": "flux"}},
    {"id": "vae", "type": "VAELoader", "widgets": {"vae_name": "ae.safetensors"}}]
TRAIN_EDIT_KONTEXT = _edit_graph("kontext", [
    {"id": "unet", "type": "UNETLoader", "widgets": {"unet_name": "flux1-dev-kontext_fp8_scaled.safetensors"}},
] + _FLUX_LOADERS, {"type": "EmptySD3LatentImage", "widgets": {"width": 1024, "height": 1024, "batch_size": 1}},
    1.0, 1024, 20, guidance=2.5)
TRAIN_EDIT_QWEN = _edit_graph("qwen", [
    {"id": "unet", "type": "UNETLoader",
     "widgets": {"unet_name": "qwen_image_edit_2509_fp8_e4m3fn.safetensors", "weight_dtype": "fp8_e4m3fn"}},
] + _QWEN_LOADERS, {"type": "EmptySD3LatentImage", "widgets": {"width": 1024, "height": 1024, "batch_size": 1}}, 2.5, 1024, 20,
    qwen=True)
TRAIN_EDIT_FLUX2 = _edit_graph("flux2", [
    {"id": "unet", "type": "UNETLoader", "widgets": {"unet_name": "flux2_dev_fp8mixed.safetensors"}},
    {"id": "te", "type": "CLIPLoader", "widgets": {"clip_name": "mistral_3_small_flux2_fp8.safetensors",
                                                   "type": "flux2"}},
    {"id": "vae", "type": "VAELoader", "widgets": {"vae_name": "flux2-vae.safetensors"}},
], {"type": "EmptyFlux2LatentImage", "widgets": {"width": 1024, "height": 1024, "batch_size": 1}}, 1.0, 1024, 20,
    guidance=4.0)

# The families whose templates are checked by validation only (see above), with the host version they need.
TEMPLATES = {"train_qwen_image": "qwen_image", "train_z_image": "z_image", "train_sdxl": "sdxl",
             "train_chroma": "chroma", "train_video_wan22": "wan", "train_video_ltx2": "ltx2",
             "train_edit_kontext": "flux", "train_edit_qwen": "qwen_image", "train_edit_flux2": "flux2"}


TAG_FILTER_TRAIN = [
    {"id": "ckpt", "type": "CheckpointLoaderSimple", "widgets": {"ckpt_name": TINY}},
    {"id": "data", "type": "KilnLoadDataset", "widgets": {"path": "kiln_demo_dataset", "resolution": 64,
                                                          "min_bucket_reso": 64, "max_bucket_reso": 128,
                                                          "bucket_reso_steps": 64, "keep_tokens": 1,
                                                          "shuffle_caption": True}},
    {"id": "tagger", "type": "KilnTagger", "title": "Kiln Tagger (tags replace the captions in the graph)",
     "widgets": {"model": "wd-v1-4-moat-tagger-v2", "caption_mode": "none"}, "inputs": {"dataset": ("data", 0)}},
    {"id": "filter", "type": "KilnTagFilter",
     "widgets": {"remove": "solo", "remove_metadata_tags": True, "character_preset": True, "trigger": "kiln shapes",
                 "replace": "red_dress=zyxdress", "drop_implied": True},
     "inputs": {"dataset": ("tagger", 1)}},
    {"id": "preview", "type": "KilnDatasetPreview", "widgets": {"per_bucket": 4, "epochs": 1},
     "inputs": {"dataset": ("filter", 1)}},
    {"id": "freq_png", "type": "SaveImage", "widgets": {"filename_prefix": "kiln_tag_frequency"},
     "inputs": {"images": ("filter", 3)}},
    {"id": "net", "type": "KilnNetworkConfig", "widgets": {"rank": 8, "alpha": 8.0}},
    {"id": "opt", "type": "KilnOptimizerConfig", "widgets": {"learning_rate": 1e-3, "scheduler": "constant"}},
    {"id": "train", "type": "KilnTrainLora",
     "widgets": {"output_name": "kiln_tagged", "epochs": 1, "max_steps": 20, "seed": 0},
     "inputs": {"model": ("ckpt", 0), "clip": ("ckpt", 1), "vae": ("ckpt", 2), "dataset": ("filter", 1),
                "network": ("net", 0), "optimizer": ("opt", 0)}},
    {"id": "save", "type": "KilnSaveLora", "widgets": {"filename": "kiln_tagged"}, "inputs": {"lora": ("train", 2)}},
    {"id": "loss_png", "type": "SaveImage", "widgets": {"filename_prefix": "kiln_tagged_loss"},
     "inputs": {"images": ("train", 4)}},
]

RESIZE = [
    {"id": "load", "type": "KilnLoadLora", "widgets": {"lora_name": "kiln_demo.safetensors"}},
    {"id": "resize", "type": "KilnResizeLora", "widgets": {"method": "fixed", "value": 4.0},
     "inputs": {"lora": ("load", 0)}},
    {"id": "save", "type": "KilnSaveLora", "widgets": {"filename": "kiln_demo_r4"}, "inputs": {"lora": ("resize", 0)}},
    {"id": "inspect", "type": "KilnInspectLora", "inputs": {"lora": ("resize", 0)}},
    {"id": "norms_png", "type": "SaveImage", "widgets": {"filename_prefix": "kiln_resized_block_norms"},
     "inputs": {"images": ("inspect", 1)}},
]

MERGE = [
    {"id": "load", "type": "KilnLoadLora", "widgets": {"lora_name": "kiln_demo.safetensors"}},
    {"id": "resize", "type": "KilnResizeLora", "widgets": {"method": "sv_fro", "value": 0.9},
     "inputs": {"lora": ("load", 0)}},
    {"id": "merge", "type": "KilnMergeLoras", "widgets": {"weight_a": 0.7, "weight_b": 0.3, "rank": 0},
     "inputs": {"lora_a": ("load", 0), "lora_b": ("resize", 0)}},
    {"id": "save", "type": "KilnSaveLora", "widgets": {"filename": "kiln_demo_merged"}, "inputs": {"lora": ("merge", 0)}},
    {"id": "compare", "type": "KilnCompareLoras", "inputs": {"lora_a": ("load", 0), "lora_b": ("merge", 0)}},
    {"id": "compare_png", "type": "SaveImage", "widgets": {"filename_prefix": "kiln_merge_compare"},
     "inputs": {"images": ("compare", 1)}},
]

EXTRACT = [
    {"id": "ckpt", "type": "CheckpointLoaderSimple", "widgets": {"ckpt_name": TINY}},
    {"id": "lora", "type": "LoraLoader", "title": "the 'fine-tune': base + the demo LoRA",
     "widgets": {"lora_name": "kiln_demo.safetensors", "strength_model": 1.0, "strength_clip": 1.0},
     "inputs": {"model": ("ckpt", 0), "clip": ("ckpt", 1)}},
    {"id": "extract", "type": "KilnExtractLora", "widgets": {"method": "fixed", "value": 8.0, "clamp_quantile": 1.0},
     "inputs": {"model_tuned": ("lora", 0), "model_base": ("ckpt", 0)}},
    {"id": "save", "type": "KilnSaveLora", "widgets": {"filename": "kiln_demo_extracted"},
     "inputs": {"lora": ("extract", 0)}},
    {"id": "original", "type": "KilnLoadLora", "widgets": {"lora_name": "kiln_demo.safetensors"}},
    {"id": "compare", "type": "KilnCompareLoras", "inputs": {"lora_a": ("original", 0), "lora_b": ("extract", 0)}},
    {"id": "compare_png", "type": "SaveImage", "widgets": {"filename_prefix": "kiln_extract_compare"},
     "inputs": {"images": ("compare", 1)}},
]


def _arranged(graph: list[dict], groups: dict[str, list[str]], note: str) -> list[dict]:
    """The graph with each node's group (and a column where the automatic one reads badly), a Note first."""
    where = {key: name for name, keys in groups.items() for key in keys}
    missing = [n["id"] for n in graph if n["id"] not in where]
    if missing:
        raise ValueError(f"nodes without a group: {missing}")
    order = {key: i for i, key in enumerate(k for keys in groups.values() for k in keys)}
    placed = sorted(graph, key=lambda n: order[n["id"]])
    return [{"id": "note", "type": "Note", "title": "Start here", "text": note, "size": (360, 230)}] + \
        [dict(n, group=where[n["id"]]) for n in placed]


RESULT = "Check the result"


def _family_groups(models=("unet", "te", "vae"), guidance: bool = False) -> dict[str, list[str]]:
    """The groups of a _family_graph: its loaders, the dataset, network and optimizer, the bake, the sample."""
    return {"Models": list(models), "Dataset": ["data"], "Network and optimizer": ["net", "opt"],
            "Train": ["train", "save"],
            RESULT: ["loss_png", "pos"] + (["guidance"] if guidance else []) + ["neg", "latent", "ks_lora", "dec_lora",
                                                                               "png_lora"]}
TRAIN_NOTE = ("Change first:\n"
              "1. Load Checkpoint: your base model.\n"
              "2. Kiln Load Dataset: path = your folder in ComfyUI's input folder (N_name subfolders, "
              "N = repeats), resolution 512 (SD1.5) or 1024 (SDXL/Flux).\n"
              "3. Kiln Train LoRA: output_name, and epochs (or max_steps).\n"
              "4. Kiln Sample Prompts: a prompt with your trigger word.\n"
              "Then Queue. The Train node shows the loss and the samples over time; "
              "'Edit captions' on the dataset node opens the caption editor.")

CAPTION_FILTER_TRAIN = [
    {"id": "ckpt", "type": "CheckpointLoaderSimple", "widgets": {"ckpt_name": TINY}},
    {"id": "data", "type": "KilnLoadDataset", "widgets": {"path": "kiln_demo_dataset", "resolution": 64,
                                                          "min_bucket_reso": 64, "max_bucket_reso": 128,
                                                          "bucket_reso_steps": 64, "keep_tokens": 1}},
    {"id": "tagger", "type": "KilnTagger", "title": "Kiln Tagger (tags for the captioner to combine)",
     "widgets": {"model": "wd-v1-4-moat-tagger-v2", "caption_mode": "none"}, "inputs": {"dataset": ("data", 0)}},
    {"id": "captioner", "type": "KilnCaptioner", "title": "Kiln Captioner (tags first, then the caption)",
     "widgets": {"model": "Florence-2-base", "template": "training", "max_new_tokens": 96, "caption_mode": "none",
                 "combine": "tags first"},
     "inputs": {"dataset": ("tagger", 1)}},
    {"id": "filter", "type": "KilnTagFilter",
     "widgets": {"remove": "solo", "remove_metadata_tags": True, "trigger": "kiln shapes", "drop_implied": True},
     "inputs": {"dataset": ("captioner", 1)}},
    {"id": "preview", "type": "KilnDatasetPreview", "widgets": {"per_bucket": 4, "epochs": 1},
     "inputs": {"dataset": ("filter", 1)}},
    {"id": "net", "type": "KilnNetworkConfig", "widgets": {"rank": 8, "alpha": 8.0}},
    {"id": "opt", "type": "KilnOptimizerConfig", "widgets": {"learning_rate": 1e-3, "scheduler": "constant"}},
    {"id": "train", "type": "KilnTrainLora",
     "widgets": {"output_name": "kiln_captioned", "epochs": 1, "max_steps": 20, "seed": 0},
     "inputs": {"model": ("ckpt", 0), "clip": ("ckpt", 1), "vae": ("ckpt", 2), "dataset": ("filter", 1),
                "network": ("net", 0), "optimizer": ("opt", 0)}},
    {"id": "save", "type": "KilnSaveLora", "widgets": {"filename": "kiln_captioned"},
     "inputs": {"lora": ("train", 2)}},
    {"id": "loss_png", "type": "SaveImage", "widgets": {"filename_prefix": "kiln_captioned_loss"},
     "inputs": {"images": ("train", 4)}},
]
_EDIT_GROUPS = {"Models": ["unet", "te", "vae"], "Dataset": ["data"], "Network and optimizer": ["net", "opt"],
                "Train": ["train", "save"],
                RESULT: ["loss_png", "before", "ref", "text", "pos", "guidance", "neg", "latent", "ks_base", "ks_lora",
                         "dec_base", "dec_lora", "png_base", "png_lora"]}


def _edit_note(models: str, sampling: str) -> str:
    return ("Change first:\n1. " + models + ".\n2. Kiln Load Dataset: path = your folder of edited images (the "
            "\"after\"), with the \"before\" of each in control/ beside them under the same file name; each caption "
            "is the edit instruction (docs/edit.md).\n3. Kiln Train LoRA: output_name, epochs.\n4. The picture to "
            f"edit and the instruction; the base and the trained model sample the same edit ({sampling}).")


GRAPHS = {
    "train_then_sample": _arranged(TRAIN_THEN_SAMPLE, {
        "Dataset": ["data"], "Network and optimizer": ["net", "opt"],
        "Train": ["ckpt", "prompts", "train", "save"],
        RESULT: ["loss_png", "timeline", "timeline_png", "pos", "neg", "latent", "ks_base", "ks_lora",
                 "dec_base", "dec_lora", "png_base", "png_lora"]}, TRAIN_NOTE),
    "train_then_sample_sd3": _arranged(TRAIN_THEN_SAMPLE_SD3, _family_groups(),
        "Change first:\n1. Load Diffusion Model / Load CLIP / Load VAE: your SD3.5 files (CLIP type sd3; "
        "TripleCLIPLoader for clip_l + clip_g + t5xxl). For Flux: DualCLIPLoader (clip_l + t5xxl, type flux) "
        "and the Flux VAE; Qwen-Image, Z-Image, Wan: CLIPLoader with their type.\n2. Kiln Load Dataset: "
        "your folder, resolution 1024.\n3. Kiln Train LoRA: output_name, epochs."),
    "train_then_sample_flux": _arranged(TRAIN_THEN_SAMPLE_FLUX, _family_groups(guidance=True),
        "Change first:\n1. Load Diffusion Model: flux1-dev (or schnell); DualCLIPLoader: clip_l + "
        "t5xxl_fp16 (type flux); Load VAE: ae.safetensors. Same graph for Chroma (CLIPLoader t5xxl, type "
        "chroma).\n2. Kiln Load Dataset: your folder, resolution 1024 (captions in plain sentences).\n"
        "3. Kiln Train LoRA: output_name, epochs. Flux dev trains with guidance 1 and samples with "
        "FluxGuidance 3.5, cfg 1."),
    "train_then_sample_wan": _arranged(TRAIN_THEN_SAMPLE_WAN, _family_groups(),
        "Change first:\n1. Load Diffusion Model: a Wan 2.1 t2v model; Load CLIP: umt5_xxl (type wan); "
        "Load VAE: wan_2.1_vae.\n2. Kiln Load Dataset: your images (one frame each), resolution 512-1024.\n"
        "3. Kiln Train LoRA: output_name, epochs. Sample with length 1 for a still image."),
    "train_qwen_image": _arranged(TRAIN_QWEN_IMAGE, _family_groups(),
        "Change first:\n1. The three loaders: your Qwen-Image files (fp8 weights train in bypass: the base stays "
        "fp8; 'default' weight_dtype for bf16 files). Qwen-Image-Edit: the same graph with its model.\n"
        "2. Kiln Load Dataset: path = your folder (N_name subfolders), resolution 1328 (1024 fits 16 GB "
        "better); captions in plain sentences.\n3. Kiln Train LoRA: output_name, epochs.\n"
        "4. The positive prompt: your trigger word."),
    "train_z_image": _arranged(TRAIN_Z_IMAGE, _family_groups(),
        "Change first:\n1. The three loaders: your Z-Image files (Qwen3-4B text encoder, CLIP type lumina2; "
        "the Flux VAE ae.safetensors).\n2. Kiln Load Dataset: path = your folder, resolution 1024; captions in "
        "plain sentences.\n3. Kiln Train LoRA: output_name, epochs.\n4. The sampler: Turbo samples in 8 steps "
        "at cfg 1; the base model wants about 30 steps and cfg 4."),
    "train_chroma": _arranged(TRAIN_CHROMA, _family_groups(),
        "Change first:\n1. The three loaders: your Chroma file (Chroma1-HD or Chroma1-Base), t5xxl (CLIP type chroma), "
        "the Flux VAE ae.safetensors.\n2. Kiln Load Dataset: path = your folder, resolution 1024 (512 trains "
        "faster); captions in plain sentences.\n3. Kiln Train LoRA: output_name, epochs.\n4. The sampler: real cfg "
        "(about 4) and a negative prompt; Chroma has no FluxGuidance."),
    "train_video_wan22": _arranged(TRAIN_VIDEO_WAN22, {
        "Models": ["unet", "unet_low", "te", "vae"], "Dataset": ["data"], "Network and optimizer": ["net", "opt"],
        "Train": ["train", "save", "save_low"],
        RESULT: ["loss_png", "pos", "neg", "latent", "ks_lora", "ks_low", "dec_lora", "webp_lora"]},
        "Change first:\n1. The two Load Diffusion Model nodes: Wan 2.2 A14B's high-noise and low-noise experts "
        "(both train in one run; expert_boundary 0.875 for t2v, 0.9 for i2v).\n2. Kiln Load Dataset: path = your "
        "clips (.mp4/.webm/.mov/.gif or folders of numbered frames, a .txt caption each), 33-frame windows at 16 "
        "fps.\n3. Kiln Train LoRA: output_name, epochs. Two LoRAs are saved, one per expert: load each on its "
        "expert."),
    "train_video_ltx2": _arranged(TRAIN_VIDEO_LTX2, dict(_family_groups(models=("ckpt", "te")), **{
        RESULT: ["loss_png", "pos", "neg", "latent", "ks_lora", "dec_lora", "webp_lora"]}),
        "Change first:\n1. Load Checkpoint: your LTX-2 file; Load LTXV Audio Text Encoder: Gemma 3 12B.\n"
        "2. Kiln Load Dataset: path = your clips (a .txt caption each); windows are cut to 8k+1 frames (33 here) "
        "at 24 fps.\n3. Kiln Train LoRA: output_name, epochs. Trains on video (audio is not trained)."),
    "train_edit_kontext": _arranged(TRAIN_EDIT_KONTEXT, _EDIT_GROUPS, _edit_note(
        "Load Diffusion Model: Flux Kontext dev; DualCLIPLoader: clip_l + t5xxl (type flux); Load VAE: ae",
        "FluxGuidance 2.5, cfg 1")),
    "train_edit_qwen": _arranged(TRAIN_EDIT_QWEN, _EDIT_GROUPS, _edit_note(
        "Load Diffusion Model: Qwen-Image-Edit 2509 or 2511; Load CLIP: qwen_2.5_vl_7b (type qwen_image); Load VAE: "
        "qwen_image_vae. Up to three controls: control/, control_1/, control_2/", "cfg 2.5")),
    "train_edit_flux2": _arranged(TRAIN_EDIT_FLUX2, _EDIT_GROUPS, _edit_note(
        "Load Diffusion Model: FLUX.2 dev (or klein); Load CLIP: its text encoder (type flux2); Load VAE: the FLUX.2 "
        "VAE", "FluxGuidance 4, cfg 1")),
    "train_sdxl": _arranged(TRAIN_SDXL, _family_groups(models=("ckpt",)),
        "Change first:\n1. Load Checkpoint: your SDXL model (Illustrious, NoobAI, Pony are SDXL; v-pred "
        "models are detected).\n2. Kiln Load Dataset: path = your folder (N_name subfolders), resolution "
        "1024; booru tags for anime models.\n3. Kiln Train LoRA: output_name, epochs.\n4. The positive "
        "prompt: your trigger word."),
    "tag_filter_train": _arranged(TAG_FILTER_TRAIN, {
        "Dataset": ["data", "tagger", "filter", "preview", "freq_png"], "Network and optimizer": ["net", "opt"],
        "Train": ["ckpt", "train", "save"], RESULT: ["loss_png"]},
        "Change first:\n1. Kiln Load Dataset: your folder.\n2. Kiln Tagger: the tagger model and thresholds.\n"
        "3. Kiln Tag Filter: tags to remove, your trigger word.\n4. Kiln Train LoRA: output_name, epochs.\n"
        "Check the tag frequency chart before a long run."),
    "caption_filter_train": _arranged(CAPTION_FILTER_TRAIN, {
        "Dataset": ["data", "tagger", "captioner", "filter", "preview"], "Network and optimizer": ["net", "opt"],
        "Train": ["ckpt", "train", "save"], RESULT: ["loss_png"]},
        "Change first:\n1. Kiln Load Dataset: your folder.\n2. Kiln Captioner: the model (Florence-2, JoyCaption, "
        "Qwen2.5-VL / Qwen3-VL in models/LLM), template, and combine (caption only for natural-language "
        "families).\n3. Kiln Tag Filter: your trigger word.\n4. Kiln Train LoRA: output_name, epochs.\n"
        "Set caption_mode to overwrite on the captioner to keep the captions as .txt files."),
    "resize": _arranged(RESIZE, {"LoRA": ["load"], "Resize and save": ["resize", "save"],
                                 RESULT: ["inspect", "norms_png"]},
                        "Change first:\n1. Kiln Load LoRA: the LoRA to shrink.\n2. Kiln Resize LoRA: method "
                        "(fixed rank, or sv_fro / sv_ratio / sv_cumulative for a per-layer rank) and its value.\n"
                        "3. Kiln Save LoRA: the new file name."),
    "merge": _arranged(MERGE, {"LoRAs": ["load", "resize"], "Merge and save": ["merge", "save"],
                               RESULT: ["compare", "compare_png"]},
                       "Change first:\n1. The two Kiln Load LoRA / LoRA inputs.\n2. Kiln Merge LoRAs: the "
                       "weights, and rank (0 keeps the exact sum).\n3. Kiln Save LoRA: the file name."),
    "extract": _arranged(EXTRACT, {"Models": ["ckpt", "lora"], "Extract and save": ["extract", "save"],
                                   RESULT: ["original", "compare", "compare_png"]},
                         "Change first:\n1. Load Checkpoint: the base model (model B).\n2. The tuned model "
                         "(model A): here the base plus a LoRA; use your fine-tuned checkpoint instead.\n"
                         "3. Kiln Extract LoRA: rank (fixed) or a dynamic method.\n4. Kiln Save LoRA: the name."),
}
