"""Edit LoRAs through the real host: a tiny Flux (Kontext's architecture), FLUX.2 and Qwen-Image model built from the
host's classes trains on paired images with the control latents passed as the host's own reference latents (the
model sees them as ref_latents and returns the target's shape); the saved file, through LoraLoader and the host's
ReferenceLatent node, changes the edit output; SD1.5 given controls is refused before any step."""
import numpy as np
import pytest
import torch
from PIL import Image

from conftest import REPO


def _pairs(root, n=4, controls=("control",)):
    folder = root / "5_edit"
    for i in range(n):
        folder.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (64, 64), (230, 20 + 40 * i, 20)).save(folder / f"p{i}.png")
        (folder / f"p{i}.txt").write_text("make it red")
        for c in controls:
            (folder / c).mkdir(exist_ok=True)
            Image.new("RGB", (64, 64), (20, 20 + 40 * i, 230)).save(folder / c / f"p{i}.png")
    return root


def _dataset(root, **kw):
    from kiln.core.data import DatasetConfig, load_dataset
    return load_dataset(DatasetConfig(path=str(root), resolution=64, min_bucket_reso=64, max_bucket_reso=64,
                                      bucket_reso_steps=64, **kw))


def _family(family):
    import nodes
    from kiln.devtools import family_fixtures as ff
    if ff.available(family):
        pytest.skip(ff.available(family))
    assets = ff.ensure_family_assets(family, REPO / ".cache" / "test-assets")
    model, _ = ff.load_model(family, assets.unet_name)
    with torch.inference_mode():
        vae = nodes.VAELoader().load_vae(assets.vae_name)[0]
    return model, ff.tiny_text_encoder(family, cache_dir=REPO / ".cache" / "test-assets"), vae


def _edit_sample(model, clip, vae, control):
    """The host's own edit path: VAEEncode the control, ReferenceLatent on the prompt, KSampler."""
    import nodes
    from comfy_extras.nodes_edit_model import ReferenceLatent
    with torch.inference_mode():
        lat = nodes.VAEEncode().encode(vae, control)[0]
        if getattr(model.model.latent_format, "latent_dimensions", 2) == 3 and lat["samples"].dim() == 4:
            lat = {"samples": lat["samples"].unsqueeze(2)}   # the tiny image VAE on Qwen-Image (its own VAE gives 5-D)
        pos = nodes.CLIPTextEncode().encode(clip, "make it red")[0]
        pos = ReferenceLatent.execute(pos, lat)[0]
        out = nodes.KSampler().sample(model, 3, 3, 1.0, "euler", "simple", pos, pos,
                                      {"samples": torch.zeros_like(lat["samples"])})[0]
    return out["samples"].float().cpu().numpy()


def _bake(model, clip, vae, dataset, name, steps=4, batch=2, samples=None):
    from kiln.core.net.spec import NetworkSpec
    from kiln.core.train.loop import TrainConfig
    from kiln.core.train.optim import OptimizerSpec
    from kiln.host.bake import SaveSpec, bake
    with torch.inference_mode():
        return bake(model, clip, vae, dataset, NetworkSpec(rank=4, alpha=4.0, targets="attn_mlp"),
                    OptimizerSpec(lr=5e-3, scheduler="constant"),
                    TrainConfig(max_steps=steps, batch_size=batch, seed=0, probe_samples=2),
                    SaveSpec(output_name=name, save_dtype="fp32", save_state=False), samples=samples)


@pytest.mark.parametrize("family,controls", [("flux1-dev", ("control",)), ("flux2", ("control",)),
                                             ("qwen-image", ("control_1", "control_2", "control_3"))])
def test_edit_family_trains_through_reference_latents(family, controls, host, tmp_path):
    import nodes
    model, clip, vae = _family(family)
    dataset = _dataset(_pairs(tmp_path, controls=controls), controls="auto")
    assert dataset.controls_per_image == len(controls)
    seen = []

    def spy(module, args, kwargs):
        refs = kwargs.get("ref_latents")
        if torch.is_grad_enabled() and refs is not None:
            seen.append((tuple(args[0].shape), [tuple(r.shape) for r in refs]))
    handle = model.model.diffusion_model.register_forward_pre_hook(spy, with_kwargs=True)
    try:
        result = _bake(model, clip, vae, dataset, f"edit_{family}")
    finally:
        handle.remove()
    assert len(result.result.losses) == 4 and np.isfinite([v for _, v in result.result.losses]).all()
    # every training forward got one reference per control, the batch's size, at the target's latent size
    assert len(seen) >= 4, seen
    for x_shape, refs in seen:
        assert len(refs) == len(controls) and all(r[0] == x_shape[0] == 2 and r[-2:] == x_shape[-2:] for r in refs)
    control = torch.zeros(1, 64, 64, 3)
    control[..., 2] = 0.9
    rel = result.saved_files[-1].relative_to(host.loras_dir()).as_posix()
    with torch.inference_mode():
        lm = nodes.LoraLoader().load_lora(model, clip, rel, 1.0, 0.0)[0]
    base, from_file, in_graph = (_edit_sample(m, clip, vae, control) for m in (model, lm, result.model))
    assert np.abs(from_file - base).max() > 1e-4, "the LoRA changed nothing in the edit output"
    np.testing.assert_allclose(from_file, in_graph, atol=1e-4)


def test_controls_refused_on_a_family_without_reference_images(host, loaded, tmp_path):
    model, clip, vae, _ = loaded
    dataset = _dataset(_pairs(tmp_path, n=2), controls="auto")
    with pytest.raises(ValueError, match="Flux Kontext.*Qwen-Image-Edit.*FLUX.2"):
        _bake(model, clip, vae, dataset, "edit_sd15", steps=1, batch=1)


def test_edit_family_without_controls_trains_as_text_to_image(host, tmp_path, caplog):
    import logging
    model, clip, vae = _family("flux1-dev")
    dataset = _dataset(_pairs(tmp_path, n=2, controls=()))
    with caplog.at_level(logging.INFO, logger="kiln"):
        result = _bake(model, clip, vae, dataset, "edit_plain", steps=1, batch=1)
    assert len(result.result.losses) == 1
    assert any("trains as plain text-to-image" in r.getMessage() for r in caplog.records)


def test_training_samples_edit_the_sample_prompts_control_picture(host, tmp_path):
    """Kiln Sample Prompts' control image reaches the training-time samples as the host's reference latent: the same
    prompt and seed sample differently with a control than without, and the node refuses a count that does not fit."""
    from kiln.core.train.loop import TrainConfig
    from kiln.core.train.optim import OptimizerSpec
    from kiln.core.net.spec import NetworkSpec
    from kiln.host.bake import SaveSpec, bake
    from kiln.nodes.train import KilnSamplePrompts
    model, clip, vae = _family("flux1-dev")
    dataset = _dataset(_pairs(tmp_path), controls="auto")
    picture = torch.zeros(1, 64, 64, 3)
    picture[..., 2] = 1.0
    images = []
    for controls in (None, picture):
        spec = KilnSamplePrompts.execute("make it red --w 64 --h 64 --d 3 --s 2", "", 64, 64, 2, 1.0, 3, "euler",
                                         "simple", control_images=controls).args[0]
        assert len(spec.controls) == (0 if controls is None else 1)
        with torch.inference_mode():
            result = bake(model, clip, vae, dataset, NetworkSpec(rank=4, alpha=4.0), OptimizerSpec(lr=1e-3),
                          TrainConfig(max_steps=1, seed=0, probe_samples=0),
                          SaveSpec(output_name=f"edit_samples_{controls is None}", save_dtype="fp32",
                                   save_state=False), samples=spec)
        images.append(result.report.samples[-1].image)
    assert np.abs(images[0] - images[1]).max() > 1e-3, "the control picture did not reach the sample"
    with pytest.raises(ValueError, match="2 control images for 3 prompts"):
        KilnSamplePrompts.execute("a\nb\nc", "", 64, 64, 2, 1.0, 3, "euler", "simple",
                                  control_images=torch.zeros(2, 64, 64, 3))


def test_an_edit_run_resumes_exactly(host, tmp_path):
    """Resuming an edit run from its step save gives the LoRA the uninterrupted run gives (its control latents come
    back from the cache with their targets, batch 2)."""
    from kiln.core.net.spec import NetworkSpec
    from kiln.core.train.loop import TrainConfig
    from kiln.core.train.optim import OptimizerSpec
    from kiln.host.bake import SaveSpec, bake
    model, clip, vae = _family("flux1-dev")
    dataset = _dataset(_pairs(tmp_path), controls="auto")

    def run(name, **save):
        with torch.inference_mode():
            return bake(model, clip, vae, dataset, NetworkSpec(rank=4, alpha=4.0), OptimizerSpec(lr=5e-3),
                        TrainConfig(max_steps=2, batch_size=2, seed=0, probe_samples=0, save_every_n_steps=1),
                        SaveSpec(output_name=name, save_dtype="fp32", **save))
    whole = run("edit_resume_whole")
    state = next(p for p in sorted(whole.saved_files[0].parent.iterdir()) if p.name.endswith("-000001-state"))
    resumed = run("edit_resume_second", resume_from=str(state))
    assert resumed.result.step == 2 and len(resumed.result.losses) == 1
    for key, value in whole.lora.tensors.items():
        np.testing.assert_allclose(resumed.lora.tensors[key].float().numpy(), value.float().numpy(), rtol=1e-4,
                                   atol=1e-6, err_msg=key)


def test_qwen_edit_trains_with_controls_at_its_own_reference_size(host, tmp_path):
    """control_resolution "family" on Qwen-Image: the controls go to the model at ~1024x1024 pixels (the size
    TextEncodeQwenImageEditPlus gives its references) while the targets stay at 64; the host's reference path takes
    them and the model still returns the target's shape. Training-time samples take their control the same way."""
    from kiln.nodes.train import KilnSamplePrompts
    model, clip, vae = _family("qwen-image")
    dataset = _dataset(_pairs(tmp_path, n=2), controls="auto", control_resolution="family")
    samples = KilnSamplePrompts.execute("make it red --w 64 --h 64 --s 1", "", 64, 64, 1, 1.0, 3, "euler", "simple",
                                        control_images=torch.zeros(1, 48, 48, 3)).args[0]
    seen, sampled = [], []

    def spy(module, args, kwargs):
        if kwargs.get("ref_latents") is not None:
            (seen if torch.is_grad_enabled() else sampled).append(
                (tuple(args[0].shape), [tuple(r.shape) for r in kwargs["ref_latents"]]))
    handle = model.model.diffusion_model.register_forward_pre_hook(spy, with_kwargs=True)
    out = []
    hook = model.model.diffusion_model.register_forward_hook(lambda m, a, o: out.append(tuple(o.shape)))
    try:
        result = _bake(model, clip, vae, dataset, "edit_qwen_family_size", steps=2, batch=2, samples=samples)
    finally:
        handle.remove()
        hook.remove()
    assert len(result.result.losses) == 2 and np.isfinite([v for _, v in result.result.losses]).all()
    assert seen and all(x[-2:] == (8, 8) and refs == [(2, 16, 1, 128, 128)] for x, refs in seen), seen
    assert all(o[-2:] == (8, 8) for o in out)
    assert sampled and all(refs[0][-2:] == (128, 128) for _, refs in sampled), sampled
