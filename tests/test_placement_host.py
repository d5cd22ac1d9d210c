"""The host's memory manager decides where a bake's models live (host/placement.py), through the real host:
the diffusion model is loaded with memory_required = the pre-flight estimate, the VAE and text encoder are
off the device while training, and with a device budget smaller than the model the host's partial loading
streams layers (counted) while the LoRA trained is the one a fully loaded model trains. The estimate is
checked against the measured peak (core.train.memory) within 25%."""
import functools

import pytest
import torch


@pytest.fixture(scope="module")
def setup(loaded_for_measuring):
    return loaded_for_measuring


def _bake(setup, name, steps=2, batch=2, on_step=None, **cfg):
    from kiln.core.net.spec import NetworkSpec
    from kiln.core.train.loop import TrainConfig
    from kiln.core.train.optim import OptimizerSpec
    from kiln.core.train.specs import SaveSpec
    from kiln.host.bake import bake
    model, clip, vae, dataset = setup
    result = bake(model, clip, vae, dataset, NetworkSpec(rank=4, alpha=4.0), OptimizerSpec(lr=1e-3, scheduler="constant"),
                  TrainConfig(max_steps=steps, batch_size=batch, seed=0, probe_samples=0, **cfg),
                  SaveSpec(output_name=name, save_dtype="fp32", save_state=False, cache_latents_to_disk=True),
                  on_step=on_step)
    return result, result.report.placement


def test_model_loaded_with_the_estimate_and_encoders_unloaded(setup, monkeypatch):
    import comfy.model_management as mm
    model, clip, vae, _ = setup
    monkeypatch.delenv("KILN_DEVICE_BUDGET_MB", raising=False)
    calls = []
    real_load = mm.load_models_gpu

    @functools.wraps(real_load)   # the same signature: placement detects memory_required by it
    def recording_load(models, *args, **kwargs):
        calls.append(([type(m.model).__name__ for m in models], kwargs.get("memory_required", 0)))
        return real_load(models, *args, **kwargs)
    monkeypatch.setattr(mm, "load_models_gpu", recording_load)
    during = []

    def on_step(step, total, loss):
        during.append([lm.model for lm in mm.current_loaded_models if lm.model is not None])
    result, placement = _bake(setup, "placement_load", on_step=on_step)
    estimate = placement.estimate
    assert estimate is not None and placement.memory_required == estimate.training_bytes() > 0
    # The diffusion model's load asked for exactly the estimate (the encoders' loads ask for their own).
    assert [req for names, req in calls if names == ["BaseModel"]][-1] == placement.memory_required
    assert placement.latents_cached and placement.captions_cached
    assert set(placement.unloaded) >= {type(vae.patcher.model).__name__, type(clip.patcher.model).__name__}
    # While training: the diffusion model (a clone of the MODEL) is loaded, the VAE and text encoder are not.
    assert len(during) == 2
    for loaded in during:
        assert any(m.is_clone(model) for m in loaded)
        assert not any(m is vae.patcher or m.is_clone(vae.patcher) for m in loaded)
        assert not any(m is clip.patcher or m.is_clone(clip.patcher) for m in loaded)
    assert placement.streamed == [] and placement.forward_fetches == 0
    assert len(result.result.losses) == 2


def test_small_device_budget_streams_layers_and_trains_the_same_lora(setup, monkeypatch):
    from kiln.devtools.native import diffusion_weight_bytes
    model = setup[0]
    monkeypatch.delenv("KILN_DEVICE_BUDGET_MB", raising=False)
    full, full_placement = _bake(setup, "placement_full")
    assert not full_placement.streaming
    weights = diffusion_weight_bytes(model)
    # Room for the training memory and half the weights: the host must keep about half of them off the device.
    budget = full_placement.memory_required + weights // 2
    monkeypatch.setenv("KILN_DEVICE_BUDGET_MB", str(budget / 2 ** 20))
    streamed, placement = _bake(setup, "placement_streamed")
    assert placement.estimate.budget_bytes == pytest.approx(budget, abs=2)
    assert weights // 2 <= placement.offloaded_bytes < weights
    assert len(placement.streamed) > 10
    # Every streamed layer's weight came over in each forward of both steps; the ones feeding an adapter's
    # gradient were noted in forward instead of kept and fetched again in backward.
    assert placement.forward_fetches >= 2 * len(placement.streamed)
    assert placement.backward.dropped > 0 and placement.backward.refetched == placement.backward.dropped
    assert "not fit" in placement.estimate.summary()
    assert set(streamed.lora.tensors) == set(full.lora.tensors)
    for key, value in full.lora.tensors.items():
        torch.testing.assert_close(streamed.lora.tensors[key], value, rtol=1e-5, atol=1e-7, msg=key)
    assert [loss for _, loss in streamed.result.losses] == pytest.approx([loss for _, loss in full.result.losses],
                                                                          rel=1e-5)
    print(f"budget {budget / 2**20:.1f} MiB: {placement.offloaded_bytes / 2**20:.1f} MiB of {weights / 2**20:.1f} MiB "
          f"weights off the device, {len(placement.streamed)} layers streamed, {placement.forward_fetches} forward "
          f"fetches, {placement.backward.refetched} backward fetches")


@pytest.mark.parametrize("checkpointing", [False, True])
def test_estimate_within_a_quarter_of_the_measured_peak(setup, monkeypatch, checkpointing):
    from kiln.core.train.memory import measure_peak
    monkeypatch.delenv("KILN_DEVICE_BUDGET_MB", raising=False)
    _bake(setup, "placement_warm", steps=1, batch=4)     # latents to the disk cache: no VAE in the measured run
    with measure_peak("cpu") as peak:
        _, placement = _bake(setup, f"placement_peak_{checkpointing}", steps=1, batch=4,
                             gradient_checkpointing=checkpointing)
    ratio = placement.estimate.training_bytes() / peak.peak_bytes
    print(f"checkpointing {checkpointing}: estimate {placement.estimate.training_bytes() / 2**20:.1f} MiB, "
          f"measured {peak.peak_bytes / 2**20:.1f} MiB, ratio {ratio:.2f}")
    assert 0.75 <= ratio <= 1.25
