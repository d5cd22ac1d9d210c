"""Export to kohya sd-scripts, musubi-tuner, accelerate and diffusion-pipe: the files parse and use each
tool's documented keys, with the graph's values (no host needed: the prompt is API-format data)."""
import tomllib

import pytest
import yaml

from kiln.core.export import ExportError, export_files, family_from_keys, recipe_from_prompt, write_export

# Documented keys (sd-scripts train_network.py / library/config_util.py, musubi-tuner hv_train_network.py /
# dataset/config_utils.py, accelerate's config file, diffusion-pipe examples/main_example.toml, dataset.toml).
KOHYA_ARGS = {
    "pretrained_model_name_or_path", "dataset_config", "output_dir", "output_name", "save_model_as", "save_precision",
    "network_module", "network_dim", "network_alpha", "network_dropout", "network_args", "network_train_unet_only",
    "network_train_text_encoder_only", "optimizer_type", "optimizer_args", "learning_rate", "unet_lr",
    "text_encoder_lr", "lr_scheduler", "lr_warmup_steps", "lr_scheduler_num_cycles", "lr_scheduler_power",
    "lr_scheduler_min_lr_ratio", "max_grad_norm", "max_train_steps", "max_train_epochs", "train_batch_size",
    "gradient_accumulation_steps", "seed", "mixed_precision", "gradient_checkpointing", "cache_latents",
    "cache_latents_to_disk", "save_every_n_steps", "save_every_n_epochs", "save_state", "loss_type", "huber_c",
    "min_snr_gamma", "debiased_estimation_loss", "noise_offset", "multires_noise_iterations",
    "multires_noise_discount", "min_timestep", "max_timestep", "masked_loss", "prior_loss_weight", "sample_prompts",
    "sample_every_n_steps", "sample_sampler", "clip_l", "t5xxl", "ae", "model_prediction_type", "timestep_sampling",
    "guidance_scale", "model_type", "clip_g", "gemma2"}
KOHYA_GENERAL = {"shuffle_caption", "keep_tokens", "keep_tokens_separator", "flip_aug", "color_aug", "random_crop",
                 "caption_prefix", "caption_suffix", "caption_dropout_rate", "caption_tag_dropout_rate"}
KOHYA_DATASET = {"resolution", "batch_size", "enable_bucket", "min_bucket_reso", "max_bucket_reso",
                 "bucket_reso_steps", "bucket_no_upscale", "subsets"}
KOHYA_SUBSET = {"image_dir", "num_repeats", "is_reg", "class_tokens", "caption_extension"}
MUSUBI_ARGS = {"dit", "vae", "text_encoder", "t5", "task", "dataset_config", "output_dir", "output_name",
               "network_module", "network_dim", "network_alpha", "optimizer_type", "optimizer_args", "learning_rate",
               "lr_scheduler", "lr_warmup_steps", "max_grad_norm", "max_train_steps", "max_train_epochs",
               "gradient_accumulation_steps", "seed", "mixed_precision", "gradient_checkpointing", "sdpa",
               "timestep_sampling", "discrete_flow_shift", "save_every_n_steps", "save_every_n_epochs", "save_state"}
MUSUBI_GENERAL = {"resolution", "caption_extension", "batch_size", "enable_bucket", "bucket_no_upscale"}
MUSUBI_DATASET = {"image_directory", "cache_directory", "num_repeats"}
ACCELERATE = {"compute_environment", "debug", "distributed_type", "downcast_bf16", "gpu_ids", "machine_rank",
              "main_training_function", "mixed_precision", "num_machines", "num_processes", "rdzv_backend",
              "same_network", "tpu_env", "tpu_use_cluster", "tpu_use_sudo", "use_cpu", "main_process_ip",
              "main_process_port"}
DPIPE_MAIN = {"output_dir", "dataset", "epochs", "max_steps", "micro_batch_size_per_gpu", "pipeline_stages",
              "gradient_accumulation_steps", "gradient_clipping", "warmup_steps", "lr_scheduler", "save_every_n_epochs",
              "save_every_n_steps", "checkpoint_every_n_epochs", "activation_checkpointing", "partition_method",
              "save_dtype", "caching_batch_size", "steps_per_print", "pseudo_huber_c", "model", "adapter", "optimizer"}
DPIPE_MODEL = {"type", "dtype", "checkpoint_path", "diffusers_path", "transformer_path", "llm_path", "vae_path",
               "text_encoder_path", "ckpt_path", "flux_shift", "lumina_shift", "timestep_sample_method", "unet_lr",
               "text_encoder_1_lr", "text_encoder_2_lr", "min_snr_gamma", "debiased_estimation_loss"}
DPIPE_DATASET = {"resolutions", "enable_ar_bucket", "min_ar", "max_ar", "num_ar_buckets", "frame_buckets", "directory"}


@pytest.fixture
def dataset_dir(tmp_path):
    for folder, n in (("5_kiln shapes", 2), ("2_other", 1)):
        (tmp_path / "data" / folder).mkdir(parents=True)
        for i in range(n):
            (tmp_path / "data" / folder / f"{i}.png").write_bytes(b"")
    return tmp_path / "data"


def prompt(dataset_path, **train):
    t = {"model": ["1", 0], "clip": ["1", 1], "vae": ["1", 2], "dataset": ["3", 1], "network": ["4", 0],
         "optimizer": ["5", 0], "objective": ["6", 0], "output_name": "zyx", "epochs": 7, "max_steps": 0,
         "batch_size": 3, "gradient_accumulation": 2, "seed": 11, "mixed_precision": "bf16",
         "gradient_checkpointing": True, "save_every_n_epochs": 2, "save_dtype": "bf16"}
    t.update(train)
    return {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "base.safetensors"}},
        "2": {"class_type": "KilnLoadDataset", "inputs": {"path": str(dataset_path), "resolution": 768,
                                                          "caption_source": "files", "caption_extension": ".txt",
                                                          "repeats": 1, "shuffle_caption": True, "keep_tokens": 1,
                                                          "flip_aug": True, "max_bucket_reso": 1536}},
        "3": {"class_type": "KilnTagFilter", "inputs": {"dataset": ["2", 0], "remove": "solo"}},
        "4": {"class_type": "KilnNetworkConfig", "inputs": {"algorithm": "lora", "rank": 16, "alpha": 8.0,
                                                            "conv_rank": 4, "conv_alpha": 2.0, "targets": "attn_mlp",
                                                            "train_unet": True, "train_text_encoder": False}},
        "5": {"class_type": "KilnOptimizerConfig", "inputs": {"optimizer": "prodigy", "learning_rate": 1.0,
                                                              "text_encoder_lr": 1.0, "scheduler": "cosine",
                                                              "warmup_steps": 20, "weight_decay": 0.05,
                                                              "max_grad_norm": 0.5}},
        "6": {"class_type": "KilnTrainingObjective", "inputs": {"loss": "huber", "huber_c": 0.2, "min_snr_gamma": 5.0,
                                                                "max_timestep": 0.9}},
        "7": {"class_type": "KilnTrainLora", "inputs": t},
    }


def test_kohya_and_accelerate_files_carry_the_graph(dataset_dir, tmp_path):
    r = recipe_from_prompt(prompt(dataset_dir), "sdxl", resolve_model=lambda kind, name: f"/models/{kind}/{name}")
    paths = write_export(r, tmp_path / "out", num_processes=4)
    names = {p.name for p in paths}
    assert {"kohya_args.toml", "kohya_dataset.toml", "accelerate_config.yaml", "diffusion_pipe.toml",
            "diffusion_pipe_dataset.toml", "HOW_TO_RUN.txt"} <= names
    assert "musubi_args.toml" not in names   # musubi-tuner has no SDXL script
    args = tomllib.loads((tmp_path / "out" / "kohya_args.toml").read_text())
    assert set(args) <= KOHYA_ARGS, set(args) - KOHYA_ARGS
    assert args["pretrained_model_name_or_path"] == "/models/checkpoints/base.safetensors"
    assert (args["network_module"], args["network_dim"], args["network_alpha"]) == ("networks.lora", 16, 8.0)
    assert "conv_dim=4" in args["network_args"] and "conv_alpha=2.0" in args["network_args"]
    assert args["network_train_unet_only"] is True
    assert (args["optimizer_type"], args["learning_rate"], args["lr_scheduler"], args["lr_warmup_steps"]) == \
        ("Prodigy", 1.0, "cosine", 20)
    assert "weight_decay=0.05" in args["optimizer_args"]
    assert (args["max_train_epochs"], args["train_batch_size"], args["gradient_accumulation_steps"]) == (7, 3, 2)
    assert (args["seed"], args["mixed_precision"], args["save_precision"], args["max_grad_norm"]) == (11, "bf16", "bf16", 0.5)
    assert (args["loss_type"], args["huber_c"], args["min_snr_gamma"], args["max_timestep"]) == ("huber", 0.2, 5.0, 900)
    assert args["save_every_n_epochs"] == 2 and args["gradient_checkpointing"] is True
    assert args["dataset_config"] == (tmp_path / "out").resolve().as_posix() + "/kohya_dataset.toml"

    ds = tomllib.loads((tmp_path / "out" / "kohya_dataset.toml").read_text())
    assert set(ds) == {"general", "datasets"} and set(ds["general"]) <= KOHYA_GENERAL
    assert ds["general"]["shuffle_caption"] is True and ds["general"]["keep_tokens"] == 1 and ds["general"]["flip_aug"]
    (d,) = ds["datasets"]
    assert set(d) <= KOHYA_DATASET and (d["resolution"], d["batch_size"], d["max_bucket_reso"]) == (768, 3, 1536)
    subsets = {s["class_tokens"]: s for s in d["subsets"]}
    assert all(set(s) <= KOHYA_SUBSET for s in subsets.values())
    assert subsets["kiln shapes"]["num_repeats"] == 5 and subsets["other"]["num_repeats"] == 2
    assert subsets["kiln shapes"]["image_dir"] == str(dataset_dir / "5_kiln shapes")

    acc = yaml.safe_load((tmp_path / "out" / "accelerate_config.yaml").read_text())
    assert set(acc) <= ACCELERATE
    assert (acc["distributed_type"], acc["num_processes"], acc["mixed_precision"]) == ("MULTI_GPU", 4, "bf16")
    one = yaml.safe_load(export_files(r, "/x", formats=("accelerate",))[0]["accelerate_config.yaml"])
    assert one["distributed_type"] == "NO" and one["num_processes"] == 1
    how = (tmp_path / "out" / "HOW_TO_RUN.txt").read_text()
    assert "sdxl_train_network.py" in how and "KilnTagFilter" in how   # the in-graph caption edit is flagged


def test_diffusion_pipe_files(dataset_dir):
    r = recipe_from_prompt(prompt(dataset_dir, max_steps=500), "sdxl")
    files, notes = export_files(r, "/runs", formats=("diffusion-pipe",))
    main = tomllib.loads(files["diffusion_pipe.toml"])
    assert set(main) <= DPIPE_MAIN, set(main) - DPIPE_MAIN
    assert set(main["model"]) <= DPIPE_MODEL
    assert (main["model"]["type"], main["model"]["checkpoint_path"], main["model"]["min_snr_gamma"]) == \
        ("sdxl", "base.safetensors", 5.0)
    assert (main["micro_batch_size_per_gpu"], main["gradient_accumulation_steps"], main["max_steps"]) == (3, 2, 500)
    assert main["adapter"] == {"type": "lora", "rank": 16, "dtype": "bfloat16"}
    assert (main["optimizer"]["type"], main["optimizer"]["lr"], main["optimizer"]["weight_decay"]) == ("Prodigy", 1.0, 0.05)
    assert main["dataset"] == "/runs/diffusion_pipe_dataset.toml" and main["save_dtype"] == "bfloat16"
    ds = tomllib.loads(files["diffusion_pipe_dataset.toml"])
    assert set(ds) <= DPIPE_DATASET and ds["resolutions"] == [768]
    assert sorted((x["num_repeats"], x["path"].rsplit("/", 1)[-1]) for x in ds["directory"]) == [(2, "2_other"), (5, "5_kiln shapes")]
    assert any("alpha" in n for n in notes)   # diffusion-pipe has no separate alpha: said, not hidden


def test_musubi_files_for_qwen_image(dataset_dir):
    p = prompt(dataset_dir)
    p["1"] = {"class_type": "UNETLoader", "inputs": {"unet_name": "qwen_image_bf16.safetensors"}}
    p["8"] = {"class_type": "CLIPLoader", "inputs": {"clip_name": "qwen_2.5_vl_7b.safetensors"}}
    p["9"] = {"class_type": "VAELoader", "inputs": {"vae_name": "qwen_image_vae.safetensors"}}
    p["7"]["inputs"].update(clip=["8", 0], vae=["9", 0])
    r = recipe_from_prompt(p, "qwen-image")
    files, notes = export_files(r, "/o", formats=("kohya", "musubi", "diffusion-pipe"))
    assert "kohya_args.toml" not in files and any("kohya" in n for n in notes)
    args = tomllib.loads(files["musubi_args.toml"])
    assert set(args) <= MUSUBI_ARGS, set(args) - MUSUBI_ARGS
    assert (args["dit"], args["text_encoder"], args["vae"]) == \
        ("qwen_image_bf16.safetensors", "qwen_2.5_vl_7b.safetensors", "qwen_image_vae.safetensors")
    assert (args["network_module"], args["network_dim"], args["max_train_epochs"]) == ("networks.lora_qwen_image", 16, 7)
    assert "qwen_image_train_network.py" in files["musubi_args.toml"]
    ds = tomllib.loads(files["musubi_dataset.toml"])
    assert set(ds["general"]) <= MUSUBI_GENERAL and ds["general"]["resolution"] == [768, 768]
    assert all(set(d) <= MUSUBI_DATASET for d in ds["datasets"]) and len(ds["datasets"]) == 2
    dp = tomllib.loads(files["diffusion_pipe.toml"])
    assert dp["model"]["type"] == "qwen_image" and dp["model"]["transformer_path"] == "qwen_image_bf16.safetensors"


def test_flux_kohya_uses_the_flux_module_and_separate_files(dataset_dir):
    p = prompt(dataset_dir)
    p["1"] = {"class_type": "UNETLoader", "inputs": {"unet_name": "flux1-dev.safetensors"}}
    p["8"] = {"class_type": "DualCLIPLoader", "inputs": {"clip_name1": "clip_l.safetensors", "clip_name2": "t5xxl.safetensors"}}
    p["9"] = {"class_type": "VAELoader", "inputs": {"vae_name": "ae.safetensors"}}
    p["10"] = {"class_type": "ModelSamplingFlux", "inputs": {"model": ["1", 0]}}
    p["7"]["inputs"].update(model=["10", 0], clip=["8", 0], vae=["9", 0])
    files, _ = export_files(recipe_from_prompt(p, "flux1-dev"), "/o", formats=("kohya",))
    args = tomllib.loads(files["kohya_args.toml"])
    assert set(args) <= KOHYA_ARGS
    assert (args["network_module"], args["pretrained_model_name_or_path"], args["clip_l"], args["t5xxl"], args["ae"]) == \
        ("networks.lora_flux", "flux1-dev.safetensors", "clip_l.safetensors", "t5xxl.safetensors", "ae.safetensors")
    assert args["guidance_scale"] == 1.0


def test_lycoris_algorithm_and_bad_graphs(dataset_dir):
    p = prompt(dataset_dir)
    p["4"]["inputs"].update(algorithm="lokr", conv_rank=0)
    args = tomllib.loads(export_files(recipe_from_prompt(p, "sd1"), "/o", formats=("kohya",))[0]["kohya_args.toml"])
    assert args["network_module"] == "lycoris.kohya" and "algo=lokr" in args["network_args"]
    # The network size preset is applied as the Network node applies it.
    p["4"]["inputs"].update(algorithm="lora", size_preset="locon style (dim 32/16, conv 16/8)")
    args = tomllib.loads(export_files(recipe_from_prompt(p, "sd1"), "/o", formats=("kohya",))[0]["kohya_args.toml"])
    assert (args["network_dim"], args["network_alpha"]) == (32, 16.0) and "conv_dim=16" in args["network_args"]
    with pytest.raises(ExportError, match="no Kiln Train LoRA"):
        recipe_from_prompt({k: v for k, v in p.items() if k != "7"}, "sd1")
    two = dict(p, **{"8": p["7"]})
    with pytest.raises(ExportError, match="2 Kiln Train LoRA nodes"):
        recipe_from_prompt(two, "sd1")
    assert recipe_from_prompt(two, "sd1", train_node="8").output_name == "zyx"
    missing = prompt(dataset_dir.parent / "nowhere")
    with pytest.raises(ExportError, match="does not exist"):
        export_files(recipe_from_prompt(missing, "sd1"), "/o", formats=("kohya",))


def test_family_from_checkpoint_keys():
    sd = ["model.diffusion_model.input_blocks.0.0.weight", "model.diffusion_model.middle_block.0.weight"]
    assert family_from_keys(sd) == "sd1"
    assert family_from_keys(sd + ["conditioner.embedders.1.model.ln_final.weight"]) == "sdxl"
    flux = ["double_blocks.0.img_attn.qkv.weight", "single_blocks.0.linear1.weight"]
    assert family_from_keys(flux + ["guidance_in.in_layer.weight"]) == "flux1-dev"
    assert family_from_keys(flux) == "flux1-schnell"
    assert family_from_keys(["blocks.0.self_attn.q.weight", "blocks.0.cross_attn.k.weight"]) == "wan"
    assert family_from_keys(["transformer_blocks.0.attn.to_q.weight", "img_in.weight", "txt_norm.weight"]) == "qwen-image"
    assert family_from_keys(["foo.weight"]) is None


def _media_dataset(root, clips=True, controls=()):
    """A flat folder: two images (and two .mp4 clips, only listed: the export reads no frames), with ``controls``
    folders of "before" images beside them."""
    root.mkdir(parents=True)
    for name in ["a.png", "b.png"] + (["c.mp4", "d.mp4"] if clips else []):
        (root / name).write_bytes(b"")
    for folder in controls:
        (root / folder).mkdir()
        for name in ("a.png", "b.png"):
            (root / folder / name).write_bytes(b"")
    return root


def _model_prompt(dataset_path, family_files: dict, **dataset):
    p = prompt(dataset_path)
    p["1"] = {"class_type": "UNETLoader", "inputs": {"unet_name": family_files["unet"]}}
    p["8"] = {"class_type": "CLIPLoader", "inputs": {"clip_name": family_files.get("clip", "te.safetensors")}}
    p["9"] = {"class_type": "VAELoader", "inputs": {"vae_name": "vae.safetensors"}}
    p["7"]["inputs"].update(clip=["8", 0], vae=["9", 0])
    p["2"]["inputs"].update(dataset)
    return p


def test_wan_clips_and_both_experts_export(tmp_path):
    data = _media_dataset(tmp_path / "clips")
    p = _model_prompt(data, {"unet": "wan2.2_t2v_high_noise_14B.safetensors", "clip": "umt5.safetensors"},
                      frame_extraction="slide", target_frames=20, frame_stride=6, target_fps=16.0)
    p["11"] = {"class_type": "UNETLoader", "inputs": {"unet_name": "wan2.2_t2v_low_noise_14B.safetensors"}}
    p["7"]["inputs"].update(model_low_noise=["11", 0], expert="none", expert_boundary=0.875)
    files, notes = export_files(recipe_from_prompt(p, "wan"), "/o", formats=("musubi", "diffusion-pipe"))
    ds = tomllib.loads(files["musubi_dataset.toml"])
    image, video = ds["datasets"]   # musubi-tuner keeps images and clips in separate datasets
    assert image["image_directory"] == video["video_directory"] == str(data)
    assert image["cache_directory"] != video["cache_directory"]
    # 20 frames are rounded down to Wan's 4k+1, as Kiln and musubi-tuner both do.
    assert (video["target_frames"], video["frame_extraction"], video["frame_stride"]) == ([17], "slide", 6)
    assert "frame_sample" not in video and "target_frames" not in image
    args = tomllib.loads(files["musubi_args.toml"])
    assert (args["task"], args["dit"], args["dit_high_noise"], args["timestep_boundary"]) == \
        ("t2v-A14B", "wan2.2_t2v_low_noise_14B.safetensors", "wan2.2_t2v_high_noise_14B.safetensors", 875)
    assert any("source_fps" in n for n in notes)   # Kiln's target_fps has no musubi-tuner equivalent: said
    dp_ds = tomllib.loads(files["diffusion_pipe_dataset.toml"])
    assert dp_ds["frame_buckets"] == [1, 17]
    dp = tomllib.loads(files["diffusion_pipe.toml"])
    assert dp["video_clip_mode"] == "single_beginning"
    assert (dp["model"]["min_t"], dp["model"]["max_t"]) == (0.875, 1.0)   # the high-noise expert, t = 1 is noise
    assert any("wan2.2_t2v_low_noise_14B" in n and "max_t = 0.875" in n for n in notes)


def test_wan_one_expert_and_image_only_dataset(tmp_path):
    data = _media_dataset(tmp_path / "stills", clips=False)
    p = _model_prompt(data, {"unet": "wan2.2_i2v_low_noise_14B.safetensors"})
    p["7"]["inputs"].update(expert="low_noise", expert_boundary=0.9)
    files, _ = export_files(recipe_from_prompt(p, "wan"), "/o", formats=("musubi", "diffusion-pipe"))
    args = tomllib.loads(files["musubi_args.toml"])
    assert (args["task"], args["min_timestep"], args["max_timestep"], args["preserve_distribution_shape"]) == \
        ("i2v-A14B", 0, 900, True)
    assert "dit_high_noise" not in args and "timestep_boundary" not in args
    (image,) = tomllib.loads(files["musubi_dataset.toml"])["datasets"]
    assert set(image) == {"image_directory", "num_repeats", "cache_directory"}
    assert tomllib.loads(files["diffusion_pipe_dataset.toml"])["frame_buckets"] == [1]
    dp = tomllib.loads(files["diffusion_pipe.toml"])
    assert (dp["model"]["min_t"], dp["model"]["max_t"]) == (0.0, 0.9) and "video_clip_mode" not in dp


def test_qwen_image_edit_controls_export(tmp_path):
    data = _media_dataset(tmp_path / "edits", clips=False, controls=("control",))
    p = _model_prompt(data, {"unet": "qwen_image_edit_bf16.safetensors"}, controls="auto",
                      control_resolution="family")
    files, notes = export_files(recipe_from_prompt(p, "qwen-image"), "/o", formats=("musubi", "diffusion-pipe"))
    (entry,) = tomllib.loads(files["musubi_dataset.toml"])["datasets"]   # control/ is not a concept of its own
    assert (entry["image_directory"], entry["control_directory"], entry["control_resolution"]) == \
        (str(data), str(data / "control"), [1024, 1024])
    assert tomllib.loads(files["musubi_args.toml"])["model_version"] == "edit"
    (directory,) = tomllib.loads(files["diffusion_pipe_dataset.toml"])["directory"]
    assert directory == {"path": str(data), "num_repeats": 1, "control_path": str(data / "control")}
    # control_resolution "target" is musubi-tuner's default: no key.
    p["2"]["inputs"]["control_resolution"] = "target"
    files, _ = export_files(recipe_from_prompt(p, "qwen-image"), "/o", formats=("musubi",))
    assert "control_resolution" not in tomllib.loads(files["musubi_dataset.toml"])["datasets"][0]


def test_flux_controls_export_as_kontext(tmp_path):
    data = _media_dataset(tmp_path / "kontext", clips=False, controls=("control_1", "control_2"))
    p = _model_prompt(data, {"unet": "flux1-kontext-dev.safetensors"}, controls="auto", control_resolution="768")
    p["8"] = {"class_type": "DualCLIPLoader", "inputs": {"clip_name1": "clip_l.safetensors",
                                                         "clip_name2": "t5xxl.safetensors"}}
    files, notes = export_files(recipe_from_prompt(p, "flux1-dev"), "/o", formats=("kohya", "musubi"))
    args = tomllib.loads(files["musubi_args.toml"])
    assert "flux_kontext_train_network.py" in files["musubi_args.toml"]
    assert (args["network_module"], args["text_encoder1"], args["text_encoder2"], args["timestep_sampling"]) == \
        ("networks.lora_flux", "t5xxl.safetensors", "clip_l.safetensors", "flux_shift")
    (entry,) = tomllib.loads(files["musubi_dataset.toml"])["datasets"]
    assert (entry["control_directory"], entry["control_resolution"]) == (str(data / "control_1"), [768, 768])
    assert any("control_2" in n and "<stem>_0" in n for n in notes)   # two controls: how to merge them is said
    assert any("kohya sd-scripts has no edit" in n for n in notes)
    # Without controls FLUX.1 dev has no musubi-tuner script.
    p["2"]["inputs"]["controls"] = "none"
    assert "musubi_args.toml" not in export_files(recipe_from_prompt(p, "flux1-dev"), "/o", formats=("musubi",))[0]


def test_hunyuan_video_1_5_has_a_musubi_script_and_ltx2_none(tmp_path):
    data = _media_dataset(tmp_path / "hv")
    p = _model_prompt(data, {"unet": "hunyuanvideo1.5_720p_t2v.safetensors"}, target_frames=33)
    files, notes = export_files(recipe_from_prompt(p, "hunyuan-video-1.5"), "/o", formats=("musubi",))
    args = tomllib.loads(files["musubi_args.toml"])
    assert "hv_1_5_train_network.py" in files["musubi_args.toml"] and "hv_1_5_cache_latents.py" in files["musubi_args.toml"]
    assert (args["network_module"], args["task"], args["byt5"]) == ("networks.lora_hv_1_5", "t2v", "")
    assert tomllib.loads(files["musubi_dataset.toml"])["datasets"][1]["target_frames"] == [33]
    assert not any("not one Kiln knows" in n for n in notes)
    files, notes = export_files(recipe_from_prompt(p, "ltx2"), "/o", formats=("musubi",))
    assert "musubi_args.toml" not in files and any("does not train ltx2" in n for n in notes)
