"""Every diffusion family the 2026 host lists (comfy/supported_models.py) trains through the host: a tiny model
built from the family's own supported_models config class (devtools.family_fixtures.NEW_FAMILIES), the host's
VAELoader (a TAESD-layout file with the family's channels, or "pixel_space"), a tiny text encoder (the host's CLIP
class at the family's width, or the family's own encoder class where its conditioning needs it). Per family: a few
steps, finite losses, the family's own names in the metadata, LoraLoader applying every key with no "lora key not
loaded", and the trained MODEL's sample equal to the file's and different from the base's.

The families that failed before (LTX-Video / LTX-2 in-place residuals and audio layout, the comfy_kitchen RoPE
kernels without a backward on ERNIE-Image / Anima / Cosmos Predict2 / JoyImage, HiDream-O1's nested layers, Chroma
Radiance's cached fake tensor) are among them; the kernel stand-ins are also checked against the kernels."""
import logging

import numpy as np
import pytest
import torch

from conftest import REPO, load_with_every_key

# Every 2026 family the older fixtures (tests/test_families_host.py) do not build.
NEW = ["ltxv", "ltxav", "hunyuan-video-1.5", "hunyuan-video", "hunyuan-image-2.1", "kandinsky5", "kandinsky5-image",
       "krea2", "ideogram4", "longcat-image", "omnigen2", "auraflow", "pixart-sigma", "pixart-alpha", "hunyuan-dit",
       "stable-cascade-c", "ernie-image", "anima", "cosmos-predict2", "joyimage", "cogvideox", "chroma-radiance",
       "hidream-o1"]
# Families the host builds only at full size, so no tiny model of them exists to train on a CPU.
HOST_FULL_SIZE_ONLY = {
    "mochi": "the host's Genmo Mochi blocks assert Mochi's full widths (MLP 1536 x 8), so the smallest model it builds "
             "has ~10B parameters",
}


def _dataset(tiny_assets, resolution):
    from kiln.core.data import DatasetConfig, load_dataset
    return load_dataset(DatasetConfig(path=str(tiny_assets.dataset_dir), resolution=resolution,
                                      min_bucket_reso=resolution, max_bucket_reso=resolution, bucket_reso_steps=64))


def _loaded(family):
    import nodes
    from kiln.devtools import family_fixtures as ff
    reason = ff.available(family)
    if reason:
        pytest.skip(reason)
    assets = ff.ensure_family_assets(family, REPO / ".cache" / "test-assets")
    model = ff.config_built_model(family)
    with torch.inference_mode():
        vae = nodes.VAELoader().load_vae(assets.vae_name)[0]
    clip = ff.tiny_text_encoder(family, cache_dir=REPO / ".cache" / "test-assets")
    return model, clip, vae


def _empty_latent(model, family):
    """An empty latent the host's sampler takes for this family: pixels for pixel-space models, 8x8 cells (48 for
    PixArt, whose position embedding needs over 32), one frame for video formats, and LTX-2's video with an audio
    latent beside it (the host's nested [video, audio] latent, as LTXVConcatAVLatent makes)."""
    from kiln.devtools import family_fixtures as ff
    fmt = model.model.latent_format
    size = ff.FAMILIES[family].resolution // (1 if fmt.latent_channels == 3 else 8)
    frames = (1,) if getattr(fmt, "latent_dimensions", 2) == 3 else ()
    video = torch.zeros(1, fmt.latent_channels, *frames, size, size)
    if family != "ltxav":
        return video
    import comfy.nested_tensor
    dm = model.model.diffusion_model
    audio = torch.zeros(1, dm.num_audio_channels, 4, dm.audio_frequency_bins)
    return comfy.nested_tensor.NestedTensor((video, audio))


def _sample(model, clip, family, seed=5):
    import nodes
    with torch.inference_mode():
        pos = nodes.CLIPTextEncode().encode(clip, "kiln shapes, red circle")[0]
        neg = nodes.CLIPTextEncode().encode(clip, "")[0]
        out = nodes.KSampler().sample(model, seed, 3, 1.0, "euler", "simple", pos, neg,
                                      {"samples": _empty_latent(model, family)})[0]["samples"]
        if hasattr(out, "unbind"):      # LTX-2's nested latent: its video part
            out = out.unbind()[0]
        return out.float().cpu().numpy()


@pytest.mark.parametrize("family", NEW + [pytest.param(f, marks=pytest.mark.skip(reason=r))
                                          for f, r in HOST_FULL_SIZE_ONLY.items()])
def test_every_2026_family_trains_saves_and_samples(family, host, tiny_assets, caplog):
    from kiln.core.lora.io import load_lora_file
    from kiln.core.lora.metadata import MODELSPEC_ARCHITECTURE
    from kiln.core.net import families as targets
    from kiln.core.net.spec import NetworkSpec
    from kiln.core.train.loop import TrainConfig
    from kiln.core.train.optim import OptimizerSpec
    from kiln.devtools import family_fixtures as ff
    from kiln.host.bake import SaveSpec, bake
    from kiln.host.families import BASE_MODEL_VERSION, family_of
    model, clip, vae = _loaded(family)
    name = ff.FAMILIES[family].family
    assert family_of(model) == name, type(model.model.model_config).__name__
    has_table = targets.table_for(name) is not None
    targets._warned.discard(name)
    with caplog.at_level(logging.WARNING), torch.inference_mode():
        result = bake(model, clip, vae, _dataset(tiny_assets, ff.FAMILIES[family].resolution),
                      NetworkSpec(rank=4, alpha=4.0, targets="attn_mlp"), OptimizerSpec(lr=1e-2, scheduler="constant"),
                      TrainConfig(max_steps=2, seed=0, probe_samples=0),
                      SaveSpec(output_name=f"all_{family}", save_dtype="fp32", save_state=False))
    losses = np.asarray([loss for _, loss in result.result.losses], dtype=float)
    assert len(losses) == 2 and np.isfinite(losses).all(), losses
    # A family with no table trains the generic targets and says so, naming it; a tabled one says nothing.
    warned = [r.getMessage() for r in caplog.records if "no target table for model family" in r.getMessage()]
    assert bool(warned) != has_table and all(repr(name) in w for w in warned), warned
    path = result.saved_files[-1]
    lora = load_lora_file(path)
    assert lora.metadata["ss_base_model_version"] == BASE_MODEL_VERSION.get(name, name)
    if name in MODELSPEC_ARCHITECTURE:
        assert lora.metadata["modelspec.architecture"] == MODELSPEC_ARCHITECTURE[name][0] + "/lora"
    lm = load_with_every_key(host, model, clip, path, caplog, family)
    base = _sample(model, clip, family)
    in_graph = _sample(result.model, clip, family)
    assert np.abs(in_graph - base).max() > 1e-5, f"{family}: training changed nothing"
    np.testing.assert_allclose(_sample(lm, clip, family), in_graph, atol=1e-4)


def test_kernel_stand_ins_match_the_kernels_and_have_a_backward(host):
    """host.kernels' torch stand-ins give the comfy_kitchen kernels' results (the ops the host calls in ERNIE-Image,
    Cosmos Predict2 / Anima and JoyImage), take a backward where the kernels cannot, and the host's callables are
    back after the context."""
    ck = pytest.importorskip("comfy_kitchen", reason="this host has no comfy_kitchen kernels (nothing to stand in for)")
    from kiln.host import kernels
    gen = torch.Generator().manual_seed(0)
    q, k = (torch.randn(2, 3, 5, 8, generator=gen) for _ in range(2))
    angles = torch.randn(1, 1, 5, 4, generator=gen)
    freqs = torch.stack([torch.cos(angles), -torch.sin(angles), torch.sin(angles), torch.cos(angles)], -1)
    freqs = freqs.view(1, 1, 5, 4, 2, 2)
    scale = torch.rand(8, generator=gen) + 0.5
    calls = {"apply_rope": (q, k, freqs), "apply_rope1": (q, freqs), "apply_rope_split_half": (q, k, freqs),
             "apply_rope_split_half1": (q, freqs), "rms_rope": (q, k, freqs, scale), "rms_rope1": (q, freqs, scale),
             "rms_rope_split_half": (q, k, freqs, scale), "rms_rope_split_half1": (q, freqs, scale)}
    assert set(calls) == set(kernels.STAND_INS)
    real = {name: getattr(ck, name) for name in calls}
    for name, args in calls.items():
        want = real[name](*args)
        got = kernels.STAND_INS[name](*args)
        for w, g in zip(*(x if isinstance(x, tuple) else (x,) for x in (want, got))):
            torch.testing.assert_close(g, w, rtol=1e-5, atol=1e-5, msg=name)
    leaf = q.clone().requires_grad_(True)
    with pytest.raises(RuntimeError, match="autograd"):
        real["apply_rope_split_half"](leaf, k, freqs)[0].sum().backward()
    with kernels.differentiable_kernels():
        assert ck.apply_rope_split_half is kernels.apply_rope_split_half
        ck.apply_rope_split_half(leaf, k, freqs)[0].sum().backward()
    assert leaf.grad is not None and torch.isfinite(leaf.grad).all()
    assert all(getattr(ck, name) is fn for name, fn in real.items())


def test_generic_targets_reach_nested_block_stacks():
    """A family with no table trains every Linear of its block stacks at any depth (HiDream-O1's decoder sits at
    language_model.layers.N), attention only under attn; layers outside stacks only under full."""
    from kiln.core.net.families import wanted_in_family
    family = "kiln-test-untabled"
    assert wanted_in_family("language_model.layers.0.self_attn.q_proj", True, "attn_mlp", family)
    assert wanted_in_family("language_model.layers.3.mlp.down_proj", True, "attn_mlp", family)
    assert not wanted_in_family("language_model.layers.3.mlp.down_proj", True, "attn", family)
    assert wanted_in_family("blocks.2.attn.qkv", True, "attn", family)
    assert not wanted_in_family("final_layer2.linear", True, "attn_mlp", family)
    assert wanted_in_family("final_layer2.linear", True, "full", family)


def test_ltx2_trains_video_only_layers():
    """LTX-2 trains on video (its audio latent is empty): its table leaves out the audio paths, which never run."""
    from kiln.core.net.families import wanted_in_family
    assert wanted_in_family("transformer_blocks.0.attn1.to_q", True, "attn", "ltx2")
    assert wanted_in_family("transformer_blocks.0.ff.net.2", True, "attn_mlp", "ltx2")
    for audio in ("audio_attn1.to_q", "audio_ff.net.2", "audio_to_video_attn.to_k", "video_to_audio_attn.to_v"):
        assert not wanted_in_family(f"transformer_blocks.0.{audio}", True, "attn_mlp", "ltx2"), audio


def test_a_second_run_on_the_same_hidream_o1_model_trains(host, tiny_assets):
    """HiDream-O1 keeps its prompt's key/value projections across forwards for sampling; a training step must not
    reuse them (they come from an earlier step's weights and freed graph): a second run on the same MODEL, whose
    first step sees the captions the first run cached, trains."""
    from kiln.core.net.spec import NetworkSpec
    from kiln.core.train.loop import TrainConfig
    from kiln.core.train.optim import OptimizerSpec
    from kiln.host.bake import SaveSpec, bake
    model, clip, vae = _loaded("hidream-o1")
    dataset = _dataset(tiny_assets, 64)
    for run, steps in enumerate((1, 2)):
        with torch.inference_mode():
            result = bake(model, clip, vae, dataset, NetworkSpec(rank=4, alpha=4.0), OptimizerSpec(lr=1e-3),
                          TrainConfig(max_steps=steps, seed=0, probe_samples=0),
                          SaveSpec(output_name=f"all_hidream_o1_again{run}", save_state=False))
        assert len(result.result.losses) == steps
    assert model.model.diffusion_model._kv_cache_entries == []
