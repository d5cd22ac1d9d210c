"""The pre-flight estimate (host/preflight.py) for the families whose forward reads tensor values, through the
real host: Lumina2 and Z-Image read the caption's token count from the text attention mask (.item()),
HiDream's MoE gate routes tokens to experts (top-k, then boolean-mask indexing). Each tiny model (built from
the host's classes, devtools.family_fixtures) trains one step (batch 4; Lumina2 1) with the estimate made before it, and the
estimate is within 25% of the peak measured on CPU (core.train.memory), checkpointing off and on, as
test_placement_host checks for SD1.5."""
import dataclasses
import logging

import pytest
import torch

from conftest import REPO


@pytest.fixture(scope="module", params=["z-image", "lumina2", "hidream"])
def family_setup(request, host, tmp_path_factory):
    import nodes
    from kiln.core.data import DatasetConfig, load_dataset
    from kiln.devtools import family_fixtures as ff, fixtures
    family = request.param
    reason = ff.available(family)
    if reason:    # Z-Image: the 2025-10 host has no Z-Image model class
        pytest.skip(reason)
    assets = ff.ensure_family_assets(family, REPO / ".cache" / "test-assets")
    model, _ = ff.load_model(family, assets.unet_name)
    with torch.inference_mode():
        vae = nodes.VAELoader().load_vae(assets.vae_name)[0]
    clip = ff.tiny_text_encoder(family, cache_dir=REPO / ".cache" / "test-assets")
    root = fixtures.write_shapes_dataset(tmp_path_factory.mktemp(f"preflight_{family}"), size=128)
    dataset = load_dataset(DatasetConfig(path=str(root), resolution=128, min_bucket_reso=128, max_bucket_reso=128,
                                         bucket_reso_steps=64))
    return family, (model, clip, vae, dataset)


# Images per step: Lumina2 trains one at a time, since on the CPU the 2025-10 host's Lumina2 fails at batch > 1
# with a text attention mask (its CPU default, sub-quadratic attention, broadcasts the mask to the wrong shape;
# on an NVIDIA GPU that host uses PyTorch's attention instead).
BATCH = {"lumina2": 1}


def _bake(setup, name, checkpointing=False, batch=4):
    from kiln.core.net.spec import NetworkSpec
    from kiln.core.train.loop import TrainConfig
    from kiln.core.train.optim import OptimizerSpec
    from kiln.core.train.specs import SaveSpec
    from kiln.host.bake import bake
    model, clip, vae, dataset = setup
    result = bake(model, clip, vae, dataset, NetworkSpec(rank=4, alpha=4.0, targets="attn_mlp"),
                  OptimizerSpec(lr=1e-3, scheduler="constant"),
                  TrainConfig(max_steps=1, batch_size=batch, seed=0, probe_samples=0,
                              gradient_checkpointing=checkpointing),
                  SaveSpec(output_name=name, save_dtype="fp32", save_state=False, cache_latents_to_disk=True))
    return result.report.placement


@pytest.mark.parametrize("checkpointing", [False, True])
def test_estimate_within_a_quarter_of_the_measured_peak(family_setup, checkpointing, monkeypatch, caplog):
    from kiln.core.train.memory import measure_peak
    from kiln.host.training import HostDiffusionModel
    family, setup = family_setup
    monkeypatch.delenv("KILN_DEVICE_BUDGET_MB", raising=False)
    batch = BATCH.get(family, 4)
    _bake(setup, f"preflight_warm_{family}", batch=batch)     # latents to the disk cache: no VAE in the measured run
    # The captions are encoded in the measured run and cached on the text encoder's output device (the host's
    # intermediate device: the CPU beside a GPU), so on this CPU-only run the cache shares the allocator with
    # training; it is not device memory training needs. HiDream's is large (T5's 128 x 4096 states per caption).
    cached = []
    encode_text = HostDiffusionModel.encode_text

    def recording_encode_text(self, captions):
        out = encode_text(self, captions)
        cached.extend(t for cond, extra in out for t in [cond, *extra.values()] if isinstance(t, torch.Tensor))
        return out
    monkeypatch.setattr(HostDiffusionModel, "encode_text", recording_encode_text)
    # The CPU measure is rebuilt from the profiler's allocation events, and a run can lose some (a peak far below
    # its neighbours, depending on what ran before in the process): the larger of two measured runs is the figure.
    trainings = []
    for attempt in range(2):
        cached.clear()
        with caplog.at_level(logging.WARNING, logger="kiln"), measure_peak("cpu") as peak:
            placement = _bake(setup, f"preflight_{family}_{checkpointing}_{attempt}", checkpointing, batch)
        cache_bytes = sum(t.untyped_storage().nbytes() for t in {id(t): t for t in cached}.values())
        trainings.append(peak.peak_bytes - cache_bytes)
    failed = [r.getMessage() for r in caplog.records if "pre-flight memory trace failed" in r.getMessage()]
    assert not failed, failed
    assert placement.estimate is not None, f"{family}: no pre-flight estimate"
    training = max(trainings)
    ratio = placement.estimate.training_bytes() / training
    print(f"{family}, batch {batch}, checkpointing {checkpointing}: estimate {placement.estimate.training_bytes() / 2**20:.1f} MiB, "
          f"measured {training / 2**20:.1f} MiB (peak {peak.peak_bytes / 2**20:.1f} less the caption cache "
          f"{cache_bytes / 2**20:.1f}), ratio {ratio:.2f}")
    assert 0.75 <= ratio <= 1.25, f"{family}: estimate / measured peak = {ratio:.2f}"
    if not checkpointing:
        # The advice on a card too small for the step as set: a budget that holds the weights and the
        # checkpointed step but not this one names checkpointing (what a 12 GB card training Z-Image is told).
        estimate = placement.estimate
        on = dataclasses.replace(estimate.settings, checkpointing=True)
        assert estimate.training_bytes(on) < estimate.training_bytes()
        tight = dataclasses.replace(estimate, budget_bytes=estimate.total_bytes(on))
        assert not tight.fits() and tight.fitting_settings()[0] == "gradient_checkpointing on", \
            tight.fitting_settings()
        assert "gradient_checkpointing on" in tight.summary()
