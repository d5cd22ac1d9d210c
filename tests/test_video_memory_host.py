"""Memory for clips through the real host (tiny Wan 2.1 on clips written with PyAV), the pre-flight trace of the
heaviest batch priced against a device budget set here (the CPU has none): a window whose step cannot fit is refused
before the first step; a step that cannot run without gradient checkpointing turns it on; weights that do not fit
are streamed by the host's partial loading."""
import numpy as np
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


def _bake_with_budget(model, clip, vae, dataset, name, budget=None):
    from kiln.core.net.spec import NetworkSpec
    from kiln.core.train.loop import TrainConfig
    from kiln.core.train.optim import OptimizerSpec
    from kiln.core.train.specs import SaveSpec
    from kiln.host.bake import Bake
    with torch.inference_mode():
        bake = Bake(model, clip, vae, dataset, NetworkSpec(rank=4, alpha=4.0), OptimizerSpec(lr=1e-2),
                    TrainConfig(max_steps=1, seed=0, probe_samples=0, gradient_checkpointing=False),
                    # latents on disk: the three bakes encode each window once
                    SaveSpec(output_name=name, save_dtype="fp32", save_state=False, cache_latents_to_disk=True))
        if budget is None:      # the estimate only: placed, no step
            bake.check_inputs()
            with torch.inference_mode(False):
                bake.prepare_model()
                bake.build()
                bake.place()
            return bake.placement.estimate
        return bake.run()


def test_checkpointing_turns_on_only_where_a_clip_step_cannot_run_without_it(host, tmp_path, monkeypatch, caplog):
    """The video memory defaults: weights that do not fit are streamed by the host's partial loading (every run),
    and gradient checkpointing, left off, turns on (with one line saying why and how to train without) only where
    one step's activations cannot fit without it; a step that can run with it off keeps it off."""
    import logging
    from dataclasses import replace
    from kiln.core.data import DatasetConfig, load_dataset
    from kiln.core.lora.io import load_lora_file
    from kiln.devtools import family_fixtures as ff
    _, clip, vae = _wan(host)
    model = ff.config_built_model("wan", num_layers=4)     # blocks to checkpoint: checkpointing keeps less
    dataset = load_dataset(DatasetConfig(path=str(_mixed_folder(tmp_path)), resolution=64, min_bucket_reso=64,
                                         max_bucket_reso=64, target_frames=9), warn=lambda m: None)
    monkeypatch.delenv("KILN_DEVICE_BUDGET_MB", raising=False)
    estimate = _bake_with_budget(model, clip, vae, dataset, "video_probe")
    off, on = estimate.training_bytes(), estimate.training_bytes(replace(estimate.settings, checkpointing=True))
    assert on < off and estimate.weights_bytes() > off - on, (on, off, estimate.weights_bytes())
    for budget, turned_on in (((on + off) // 2, True), (off + (off - on) // 2, False)):
        monkeypatch.setenv("KILN_DEVICE_BUDGET_MB", str(budget / 2 ** 20))
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="kiln"):
            result = _bake_with_budget(model, clip, vae, dataset, f"video_budget_{turned_on}", budget)
        lines = [r.getMessage() for r in caplog.records if "checkpointing turned on" in r.getMessage()]
        report = result.report
        assert report.placement.streamed and report.placement.offloaded_bytes > 0, budget  # partial loading
        assert np.isfinite([loss for _, loss in result.result.losses]).all()
        meta = load_lora_file(result.saved_files[-1]).metadata
        assert meta["ss_gradient_checkpointing"] == str(turned_on)
        if turned_on:
            assert len(lines) == 1 and "9-frame clip window at 64x64" in lines[0] and "target_frames" in lines[0]
            assert report.checkpointing.recomputed > 0 and report.placement.estimate.settings.checkpointing
        else:
            assert not lines and report.checkpointing.recomputed == 0
