"""Every transformer family trains, saves and samples through the host: a tiny diffusion model built
with the host's own classes is written to a file, loaded by the host's UNETLoader (and detected as the
intended family), with a 16-channel TAESD-layout VAE through VAELoader and a tiny text encoder built
from the host's CLIP class (see devtools.family_fixtures for why). Per family: ~10 steps, finite losses,
lower fixed-sample loss after training, the file applied by LoraLoader with no "lora key not loaded"
and every key patched, and the trained MODEL's sample equal to the file's."""
import contextlib
import logging

import numpy as np
import pytest
import torch

from conftest import HOST_ROOT, REPO, load_with_every_key

# The 2026 host reads Flux/SD3 widths from the file; the 2025-10 host fixes them (config-built there).
HOST_2026 = HOST_ROOT is not None and (HOST_ROOT / "comfy" / "ldm" / "flux" / "math.py").is_file() and \
    "in_training" in (HOST_ROOT / "comfy" / "ldm" / "flux" / "math.py").read_text()

FAMILIES = ["flux1-dev", "flux1-schnell", "sd3", "z-image", "qwen-image", "lumina2", "wan", "wan2.2-5b", "chroma",
            "flux2", "sdxl", "hidream"]


def _loaded(family):
    import nodes
    from kiln.devtools import family_fixtures as ff
    reason = ff.available(family)
    if reason:
        pytest.skip(reason)
    assets = ff.ensure_family_assets(family, REPO / ".cache" / "test-assets")
    model, how = ff.load_model(family, assets.unet_name)
    if HOST_2026 and not ff.FAMILIES[family].config_class:
        assert how == "UNETLoader", f"{family}: the host's UNETLoader no longer reads the tiny widths"
    with torch.inference_mode():
        vae = nodes.VAELoader().load_vae(assets.vae_name)[0]
    clip = ff.tiny_text_encoder(family, cache_dir=REPO / ".cache" / "test-assets")
    return model, clip, vae


def _sample(model, clip, vae, seed=5):
    import nodes
    with torch.inference_mode():
        pos = nodes.CLIPTextEncode().encode(clip, "kiln shapes, red circle")[0]
        neg = nodes.CLIPTextEncode().encode(clip, "")[0]
        fmt = model.model.latent_format
        frames = (1,) if getattr(fmt, "latent_dimensions", 2) == 3 else ()
        latent = {"samples": torch.zeros(1, fmt.latent_channels, *frames, 8, 8)}
        out = nodes.KSampler().sample(model, seed, 4, 1.0, "euler", "simple", pos, neg, latent)[0]
        return out["samples"].float().cpu().numpy()


@pytest.mark.parametrize("family", FAMILIES)
def test_family_trains_saves_and_samples(family, host, tiny_assets, caplog):
    from kiln.core.data import DatasetConfig, load_dataset
    from kiln.core.lora.io import load_lora_file
    from kiln.core.net.spec import NetworkSpec
    from kiln.core.train.loop import TrainConfig
    from kiln.core.train.optim import OptimizerSpec
    from kiln.devtools import family_fixtures as ff
    from kiln.host.bake import SaveSpec, bake
    from kiln.host.families import family_of
    model, clip, vae = _loaded(family)
    family_name = ff.FAMILIES[family].family   # Wan 2.2 is the wan family
    assert family_of(model) == family_name, type(model.model.model_config).__name__
    dataset = load_dataset(DatasetConfig(path=str(tiny_assets.dataset_dir), resolution=64, min_bucket_reso=64,
                                         max_bucket_reso=64, bucket_reso_steps=64))
    spec = NetworkSpec(rank=4, alpha=4.0, targets="attn_mlp")
    with torch.inference_mode():
        result = bake(model, clip, vae, dataset, spec, OptimizerSpec(lr=3e-3, scheduler="constant"),
                      TrainConfig(max_steps=10, seed=0, probe_samples=4),
                      SaveSpec(output_name=f"fam_{family}", save_dtype="fp32", save_state=False))
    losses = result.result.losses
    assert len(losses) == 10 and np.isfinite(np.asarray(losses, dtype=float)).all(), losses
    assert result.result.probe_end < result.result.probe_start, (result.result.probe_start, result.result.probe_end)
    path = result.saved_files[-1]
    lora = load_lora_file(path)
    from kiln.core.lora.metadata import MODELSPEC_ARCHITECTURE
    from kiln.host.families import BASE_MODEL_VERSION
    # Each release under its own name: Wan 2.2's TI2V 5B apart from Wan 2.1 (the host's WAN22_T2V inherits
    # WAN21_T2V, so the family tables are Wan's).
    release = "wan2.2-5b" if family == "wan2.2-5b" else family_name
    assert lora.metadata["ss_base_model_version"] == BASE_MODEL_VERSION[release]
    assert lora.metadata["modelspec.architecture"] == MODELSPEC_ARCHITECTURE[release][0] + "/lora"
    lm = load_with_every_key(host, model, clip, path, caplog, family)
    from_file = _sample(lm, clip, vae)
    in_graph = _sample(result.model, clip, vae)
    base = _sample(model, clip, vae)
    assert np.abs(in_graph - base).max() > 1e-4, f"{family}: training changed nothing"
    np.testing.assert_allclose(from_file, in_graph, atol=1e-4)


def test_shipped_sd3_workflow_runs_headless_with_the_hosts_loaders(host, tiny_assets, caplog):
    """workflows/train_then_sample_sd3.json: UNETLoader + CLIPLoader (sd3) + VAELoader -> Kiln -> KSampler,
    through the real executor; the saved file names SD3 and loads in LoraLoader with every key."""
    import nodes
    from kiln.core.lora.io import load_lora_file
    from kiln.devtools import family_fixtures as ff
    from cli import runner
    if ff.available("sd3"):
        pytest.skip(ff.available("sd3"))
    ff.ensure_sd3_workflow_assets(REPO / ".cache" / "test-assets")
    result = runner.run_workflow(REPO / "workflows" / "train_then_sample_sd3.json")
    assert result.success, result.error
    path = host.loras_dir() / "kiln_demo_sd3.safetensors"
    lora = load_lora_file(path)
    assert lora.metadata["modelspec.architecture"] == "stable-diffusion-3/lora"
    assert any(k.startswith("lora_unet_joint_blocks_0_x_block_attn_qkv") for k in lora.tensors)
    with caplog.at_level(logging.WARNING), torch.inference_mode():
        model = nodes.UNETLoader().load_unet(ff.SD3_WORKFLOW_UNET, "default")[0]
        lm, _ = nodes.LoraLoader().load_lora(model, None, path.name, 1.0, 0.0)
    assert not [r for r in caplog.records if "lora key not loaded" in r.getMessage()]
    assert len(lm.patches) == len({k.split(".", 1)[0] for k in lora.tensors})


# The shipped family workflows, with their real loader nodes. The tiny T5-XXL / UMT5-XXL files are loaded by
# the host's DualCLIPLoader / CLIPLoader and detected by the host as those encoders; their shrunken widths
# reach the host's T5 class through its own "<name>_model_config" option (devtools.family_fixtures says why).
WORKFLOW_FAMILIES = {
    "flux1-dev": ("train_then_sample_flux", "kiln_demo_flux", "FluxClipModel", "lora_unet_double_blocks_0_img_attn_qkv"),
    "wan": ("train_then_sample_wan", "kiln_demo_wan", "WanT5Model", "lora_unet_blocks_0_self_attn_q"),
}


@pytest.mark.parametrize("family", sorted(WORKFLOW_FAMILIES))
def test_shipped_family_workflow_runs_headless_with_the_hosts_loaders(family, host, tiny_assets, caplog):
    import nodes
    from PIL import Image
    from kiln.core.lora.io import load_lora_file
    from kiln.core.lora.metadata import MODELSPEC_ARCHITECTURE
    from kiln.devtools import family_fixtures as ff
    from cli import runner
    from kiln.host.families import family_of
    if ff.available(family):
        pytest.skip(ff.available(family))
    if not HOST_2026:
        pytest.skip("the 2025-10 host fixes Flux's widths and Wan's text width when it detects the file, "
                    "so no tiny diffusion model loads through its UNETLoader")
    workflow, name, te_class, module = WORKFLOW_FAMILIES[family]
    ff.ensure_family_workflow_assets(family, REPO / ".cache" / "test-assets")
    prompt = runner.load_workflow(REPO / "workflows" / f"{workflow}.json")
    loaders = {v["class_type"]: v["inputs"] for v in prompt.values() if v["class_type"].endswith("Loader")}
    with ff.tiny_text_encoder_configs(), torch.inference_mode():
        te_loader = "DualCLIPLoader" if "DualCLIPLoader" in loaders else "CLIPLoader"
        clip = getattr(nodes, te_loader)().load_clip(**loaders[te_loader])[0]
        model = nodes.UNETLoader().load_unet(**loaders["UNETLoader"])[0]
    # What the graph's loaders give is the family's own encoder and diffusion model, as the host detects them.
    assert any(c.__name__ == te_class for c in type(clip.cond_stage_model).__mro__), type(clip.cond_stage_model)
    assert family_of(model) == family
    before = {p.name for p in host.output_dir().glob(f"{name}_lora*.png")}
    with ff.tiny_text_encoder_configs():
        result = runner.run_prompt(prompt)
    assert result.success, result.error
    lora = load_lora_file(host.loras_dir() / f"{name}.safetensors")
    assert lora.metadata["modelspec.architecture"] == MODELSPEC_ARCHITECTURE[family][0] + "/lora"
    assert any(k.startswith(module) for k in lora.tensors), sorted(lora.tensors)[:5]
    with caplog.at_level(logging.WARNING), torch.inference_mode():
        lm, _ = nodes.LoraLoader().load_lora(model, None, f"{name}.safetensors", 1.0, 0.0)
    assert not [r for r in caplog.records if "lora key not loaded" in r.getMessage()]
    assert len(lm.patches) == len({k.split(".", 1)[0] for k in lora.tensors}) > 0
    new = [p for p in host.output_dir().glob(f"{name}_lora*.png") if p.name not in before]
    assert len(new) == 1, new
    img = np.asarray(Image.open(new[0]).convert("RGB"), dtype=np.float32)
    assert img.shape == (64, 64, 3) and img.std() > 1.0, "the sample is blank"


def test_training_samples_use_the_familys_sampling_defaults(host, tiny_assets):
    """Flux dev's training-time samples, with Kiln Sample Prompts left at cfg 7 / the normal scheduler, are
    what a Flux workflow gives (FluxGuidance 3.5, cfg 1, simple); a cfg the user set is kept."""
    import nodes
    import node_helpers
    from kiln.core.data import DatasetConfig, load_dataset
    from kiln.core.net.spec import NetworkSpec
    from kiln.core.data.images import to_float, to_uint8
    from kiln.core.train.loop import TrainConfig
    from kiln.core.train.optim import OptimizerSpec
    from kiln.core.train.sample_prompts import SamplePrompt
    from kiln.core.train.specs import SampleSpec
    from kiln.host.bake import SaveSpec, bake
    model, clip, vae = _loaded("flux1-dev")
    dataset = load_dataset(DatasetConfig(path=str(tiny_assets.dataset_dir), resolution=64, min_bucket_reso=64,
                                         max_bucket_reso=64, bucket_reso_steps=64))
    text = "kiln shapes, red circle"
    prompts = (SamplePrompt(text, width=64, height=64, steps=3, seed=7),            # generic defaults kept
               SamplePrompt(text, width=64, height=64, steps=3, seed=7, cfg=2.0))   # the user's own cfg
    with torch.inference_mode():
        result = bake(model, clip, vae, dataset, NetworkSpec(rank=4, alpha=4.0, targets="attn_mlp"),
                      OptimizerSpec(lr=3e-3, scheduler="constant"), TrainConfig(max_steps=3, seed=0, probe_samples=0),
                      SaveSpec(output_name="fam_sampling_flux", save_dtype="fp32", save_state=False),
                      samples=SampleSpec(prompts=prompts))
    kept, own = result.samples[-2:]

    def ksampler(cfg, guidance, scheduler):
        with torch.inference_mode():
            pos = nodes.CLIPTextEncode().encode(clip, text)[0]
            if guidance is not None:
                pos = node_helpers.conditioning_set_values(pos, {"guidance": guidance})
            neg = nodes.CLIPTextEncode().encode(clip, "")[0]
            latent = {"samples": torch.zeros(1, 16, 8, 8)}
            out = nodes.KSampler().sample(result.model, 7, 3, cfg, "euler", scheduler, pos, neg, latent)[0]
            image = nodes.VAEDecode().decode(vae, out)[0][0]
        return to_float(to_uint8(image.float().cpu().numpy()))
    flux_way = ksampler(1.0, 3.5, "simple")
    assert np.abs(kept - flux_way).max() <= 2 / 255, np.abs(kept - flux_way).max()
    assert np.abs(kept - ksampler(7.0, None, "normal")).max() > 0.05, "the generic settings give the same image"
    np.testing.assert_allclose(own, ksampler(2.0, 3.5, "simple"), atol=2 / 255)


# The templates for families whose real files are the only ones their loader nodes accept (cli.graphs says why):
# the host's own prompt validation, as on Queue, with empty files of the template's names in the model folders.
TEMPLATE_FOLDERS = {"unet_name": "diffusion_models", "clip_name": "text_encoders", "vae_name": "vae",
                    "ckpt_name": "checkpoints"}


@contextlib.contextmanager
def template_model_files(prompt, tmp_path, folders=TEMPLATE_FOLDERS):
    """Empty files of the names the prompt's loaders ask for, in model folders the host lists while inside
    (``folders``: loader input -> model folder; a ``ckpt_name`` counts on a checkpoint loader only)."""
    import folder_paths
    added = []
    for node in prompt.values():
        for key, folder in folders.items():
            if key in node["inputs"] and (key != "ckpt_name" or node["class_type"] == "CheckpointLoaderSimple"):
                where = tmp_path / folder
                where.mkdir(exist_ok=True)
                (where / node["inputs"][key]).write_bytes(b"")
                if str(where) not in folder_paths.get_folder_paths(folder):
                    folder_paths.add_model_folder_path(folder, str(where))
                    added.append((folder, str(where)))
    try:
        yield
    finally:
        for folder, where in added:
            folder_paths.folder_names_and_paths[folder][0].remove(where)


@pytest.mark.parametrize("name", ["train_qwen_image", "train_sdxl", "train_z_image", "train_chroma"])
def test_full_size_family_templates_pass_the_hosts_validation(name, host, tmp_path):
    from kiln.cli.graphs import TEMPLATES
    from cli import runner
    assert name in TEMPLATES
    prompt = runner.load_workflow(REPO / "workflows" / f"{name}.json")
    with template_model_files(prompt, tmp_path):
        to_run = runner.validate_prompt(prompt)
        by_type = {v["class_type"]: k for k, v in prompt.items()}
        train = prompt[by_type["KilnTrainLora"]]["inputs"]
        # The bake takes the graph's own loaders' outputs, and the sampler the trained MODEL.
        assert {train[k][0] for k in ("model", "clip", "vae")} <= {by_type[t] for t in by_type if t.endswith("Loader")
                                                                  or t == "CheckpointLoaderSimple"}
        assert train["gradient_checkpointing"] is True
        assert prompt[by_type["KSampler"]]["inputs"]["model"] == [by_type["KilnTrainLora"], 0]
        assert by_type["KilnSaveLora"] in to_run
        # A file the folders do not hold is what the validation refuses (so the check above means something).
        loader = next(v for v in prompt.values() if v["class_type"] in ("UNETLoader", "CheckpointLoaderSimple"))
        key = "unet_name" if "unet_name" in loader["inputs"] else "ckpt_name"
        loader["inputs"][key] = "not-there.safetensors"
        with pytest.raises(runner.WorkflowError, match="not-there"):
            runner.validate_prompt(prompt)
