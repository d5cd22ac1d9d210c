"""A clip window whose training step cannot fit the device is refused before the first step, through the real host
(tiny Wan 2.1 on clips written with PyAV): the pre-flight trace of the heaviest batch priced against a budget too
small for its activations (the device's budget is set small here; the CPU has none)."""
import pytest
import torch

from test_data_clips import _mixed_folder
from test_video_host import _wan


def test_a_clip_that_cannot_fit_is_refused_before_the_first_step(host, tmp_path, monkeypatch):
    from kiln.core.data import DatasetConfig, load_dataset
    from kiln.core.net.spec import NetworkSpec
    from kiln.core.train.loop import TrainConfig
    from kiln.core.train.optim import OptimizerSpec
    from kiln.core.train.specs import SaveSpec
    from kiln.host import placement
    from kiln.host.bake import bake
    model, clip, vae = _wan(host)
    dataset = load_dataset(DatasetConfig(path=str(_mixed_folder(tmp_path)), resolution=64, min_bucket_reso=64,
                                         max_bucket_reso=64, target_frames=9), warn=lambda m: None)
    monkeypatch.setattr(placement, "device_budget", lambda patcher: 64 * 1024)
    steps = []
    with torch.inference_mode(), pytest.raises(ValueError, match=r"\.mp4: a 9-frame clip window at 64x64.*"
                                                                 r"fewer frames per window"):
        bake(model, clip, vae, dataset, NetworkSpec(rank=4, alpha=4.0), OptimizerSpec(),
             TrainConfig(max_steps=2, seed=0, probe_samples=0), SaveSpec(output_name="video_too_big", save_state=False),
             on_step=lambda *a: steps.append(a))
    assert not steps
