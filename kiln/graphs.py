"""The shipped example graphs, compactly: widgets not given take the node defaults."""

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
     "widgets": {"output_name": "kiln_demo", "epochs": 1, "max_steps": 30, "seed": 0},
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
]

GRAPHS = {"train_then_sample": TRAIN_THEN_SAMPLE}
