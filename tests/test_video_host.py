"""Clips train video families through the real host: a tiny Wan 2.1 model (the host's WanModel) with a tiny Wan 2.1
VAE (the host's video VAE, read through VAELoader) on clips written here with PyAV, mixed with still images, at
batch 2; each window is encoded as one clip, the LoRA reloads through LoraLoader with every key and changes a
multi-frame sample. Clips on an image family are refused before any step."""
import logging

import numpy as np
import pytest
import torch

from conftest import REPO, load_with_every_key
from test_data_clips import _mixed_folder

CACHE = REPO / ".cache" / "test-assets"


def _wan(host):
    from kiln.devtools import family_fixtures as ff, video_fixtures as vf
    if ff.available("wan"):
        pytest.skip(ff.available("wan"))
    assets = ff.ensure_family_assets("wan", CACHE)
    model = ff.load_model("wan", assets.unet_name)[0]
    # VAELoader on the tiny file; the 2025-10 host fixes the Wan 2.1 VAE's width, so it is built tiny there
    return model, ff.tiny_text_encoder("wan", cache_dir=CACHE), vf.load_video_vae("wan2.1", CACHE)


def _video_sample(model, clip, frames=2):
    import nodes
    with torch.inference_mode():
        pos = nodes.CLIPTextEncode().encode(clip, "kiln motion, walk")[0]
        latent = {"samples": torch.zeros(1, 16, frames, 8, 8)}
        return nodes.KSampler().sample(model, 3, 3, 1.0, "euler", "simple", pos, pos, latent)[0]["samples"].numpy()


def test_wan_trains_on_clips_and_images_at_batch_2(host, tmp_path, caplog):
    import nodes
    from kiln.core.data import DatasetConfig, load_dataset
    from kiln.core.lora.io import load_lora_file
    from kiln.core.net.spec import NetworkSpec
    from kiln.core.train.loop import TrainConfig
    from kiln.core.train.optim import OptimizerSpec
    from kiln.core.train.specs import SaveSpec
    from kiln.host.bake import bake
    model, clip, vae = _wan(host)
    dataset = load_dataset(DatasetConfig(path=str(_mixed_folder(tmp_path)), resolution=64, min_bucket_reso=64,
                                         max_bucket_reso=64, frame_extraction="slide", target_frames=9, frame_stride=8),
                           warn=lambda m: None)
    with torch.inference_mode():
        result = bake(model, clip, vae, dataset, NetworkSpec(rank=4, alpha=4.0),
                      OptimizerSpec(lr=1e-2, scheduler="constant"),
                      TrainConfig(max_steps=4, batch_size=2, seed=0, probe_samples=0),
                      SaveSpec(output_name="video_wan", save_dtype="fp32", save_state=False))
    losses = np.asarray(result.result.losses, dtype=float)
    assert len(losses) == 4 and np.isfinite(losses).all()
    # Every window was encoded as one clip: 9 frames -> 3 latent frames (Wan's 4x temporal compression).
    from kiln.host.training import vae_encoder
    encode, _ = vae_encoder(vae)
    clip_ref = next(r for b in dataset.epoch_plan(0, 1, seed=0) for r in b if dataset.images[r.index].frames)
    assert tuple(encode(dataset.load_pixels(clip_ref)[None]).shape[1:3]) == (16, 3)
    path = result.saved_files[-1]
    lora = load_lora_file(path)
    with caplog.at_level(logging.WARNING), torch.inference_mode():
        lm, _ = nodes.LoraLoader().load_lora(model, clip, path.relative_to(host.loras_dir()).as_posix(), 1.0, 0.0)
    assert not [r for r in caplog.records if "lora key not loaded" in r.getMessage()]
    assert len(lm.patches) == len({k.split(".", 1)[0] for k in lora.tensors}) > 0
    assert np.abs(_video_sample(lm, clip) - _video_sample(model, clip)).max() > 1e-5, "the LoRA changed nothing"


def test_clips_on_an_image_family_are_refused_before_any_step(loaded, tmp_path):
    from kiln.core.data import DatasetConfig, load_dataset
    from kiln.core.net.spec import NetworkSpec
    from kiln.core.train.loop import TrainConfig
    from kiln.core.train.optim import OptimizerSpec
    from kiln.core.train.specs import SaveSpec
    from kiln.host.bake import bake
    model, clip, vae, _ = loaded
    dataset = load_dataset(DatasetConfig(path=str(_mixed_folder(tmp_path)), resolution=64, min_bucket_reso=64,
                                         max_bucket_reso=64, target_frames=9), warn=lambda m: None)
    steps = []
    with torch.inference_mode(), pytest.raises(ValueError, match="video clips.*still images only"):
        bake(model, clip, vae, dataset, NetworkSpec(rank=4, alpha=4.0), OptimizerSpec(),
             TrainConfig(max_steps=2, seed=0, probe_samples=0), SaveSpec(output_name="video_refused", save_state=False),
             on_step=lambda *a: steps.append(a))
    assert not steps


def test_wan22_experts_train_in_one_run_each_on_its_noise_levels(host, tmp_path, caplog):
    """Kiln Train LoRA with model_low_noise connected: the two experts train one after the other, each on its side of
    the boundary (written as modelspec.timestep_range), saved under names that say which; both load in LoraLoader
    and change their expert's sample."""
    from kiln.core.data import DatasetConfig, load_dataset
    from kiln.core.lora.io import load_lora_file
    from kiln.core.net.spec import NetworkSpec
    from kiln.core.train.optim import OptimizerSpec
    from kiln.nodes.train import KilnTrainLora
    high, clip, vae = _wan(host)
    from kiln.devtools import family_fixtures as ff
    low = ff.config_built_model("wan", seed=1)
    dataset = load_dataset(DatasetConfig(path=str(_mixed_folder(tmp_path)), resolution=64, min_bucket_reso=64,
                                         max_bucket_reso=64, target_frames=5), warn=lambda m: None)
    with torch.inference_mode():
        out = KilnTrainLora.execute(high, clip, vae, dataset, "experts", 1, 2, 1, 1, 0, "fp32", False,
                                    network=NetworkSpec(rank=4, alpha=4.0), optimizer=OptimizerSpec(lr=1e-2),
                                    save_dtype="fp32", model_low_noise=low, expert_boundary=0.875).args
    high_model, _, high_lora, report, _, low_model, low_lora = out
    loras = host.loras_dir() / "kiln_checkpoints"
    files = {p.parent.name: p for p in loras.glob("experts_*/*.safetensors")}
    assert set(files) == {"experts_high_noise", "experts_low_noise"}, files
    ranges = {name: load_lora_file(p).metadata["modelspec.timestep_range"] for name, p in files.items()}
    hi_lo, hi_hi = map(int, ranges["experts_high_noise"].split(","))
    lo_lo, lo_hi = map(int, ranges["experts_low_noise"].split(","))
    assert hi_lo == 0 and lo_hi == 1000 and hi_hi == lo_lo and 0 < hi_hi < 1000, ranges
    assert report.steps == [1, 2] and set(high_lora.tensors) == set(low_lora.tensors)
    assert any(not torch.equal(high_lora.tensors[k], low_lora.tensors[k]) for k in high_lora.tensors)
    for base, name in ((high, "experts_high_noise"), (low, "experts_low_noise")):
        lm = load_with_every_key(host, base, clip, files[name], caplog, name)
        assert np.abs(_video_sample(lm, clip) - _video_sample(base, clip)).max() > 1e-5, name
    assert np.abs(_video_sample(low_model, clip) - _video_sample(low, clip)).max() > 1e-5


def test_video_previews_are_animated_webp_played_on_the_node_with_their_first_frame_on_the_timeline(host, tmp_path):
    """A sample prompt with --f 5 on a video family samples 5 frames: an animated WebP of them, and the first frame
    as the PNG the sample timeline and the node show."""
    from PIL import Image
    from kiln.core.data import DatasetConfig, load_dataset
    from kiln.core.net.spec import NetworkSpec
    from kiln.core.train.loop import TrainConfig
    from kiln.core.train.optim import OptimizerSpec
    from kiln.core.train.sample_prompts import SamplePrompt, parse_prompts
    from kiln.core.train.specs import SampleSpec, SaveSpec
    from kiln.host.bake import bake
    model, clip, vae = _wan(host)
    dataset = load_dataset(DatasetConfig(path=str(_mixed_folder(tmp_path)), resolution=64, min_bucket_reso=64,
                                         max_bucket_reso=64, target_frames=5), warn=lambda m: None)
    prompts = tuple(parse_prompts("kiln motion, walk --f 5 --s 2 --w 64 --h 64", SamplePrompt("")))
    assert prompts[0].frames == 5
    with torch.inference_mode():
        result = bake(model, clip, vae, dataset, NetworkSpec(rank=4, alpha=4.0), OptimizerSpec(lr=1e-2),
                      TrainConfig(max_steps=1, seed=0, probe_samples=0),
                      SaveSpec(output_name="video_preview", save_dtype="fp32", save_state=False),
                      samples=SampleSpec(prompts=prompts))
    record = result.report.samples[-1]
    assert record.animation is not None and record.animation.is_file()
    with Image.open(record.animation) as anim:
        assert anim.n_frames == 5 and anim.size == (64, 64)
        anim.seek(0)
        first = np.asarray(anim.convert("RGB"), dtype=np.float32)
    with Image.open(record.file) as png:
        assert png.size == (64, 64)
    assert np.abs(first / 255.0 - record.image).mean() < 0.1   # the PNG is the first frame (WebP is lossy)
    # The Train node plays it: its UI shows the animated WebP from the output folder, flagged as animated.
    from kiln.host import output_dir
    from kiln.nodes.train import train_ui
    ui = train_ui(result.loss_image, result.report.samples, result.report)
    shown = ui["images"][-1]
    assert output_dir() / shown["subfolder"] / shown["filename"] == record.animation and shown["type"] == "output"
    assert ui["animated"] == (False, True)
