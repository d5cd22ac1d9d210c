"""Gradient checkpointing saves memory through the real host: one training step at batch 4 with the tiny SD1.5
model, peak memory allocated inside the step measured on CPU (core.train.memory), checkpointing off vs on
at depth 1 and 2; the wrapped blocks were really recomputed in backward."""
import pytest
import torch


@pytest.fixture(scope="module")
def setup(loaded_for_measuring):
    return loaded_for_measuring


def _one_step_peak(setup, name, **cfg):
    from kiln.core.net.spec import NetworkSpec
    from kiln.core.train.loop import TrainConfig
    from kiln.core.train.memory import measure_peak
    from kiln.core.train.optim import OptimizerSpec
    from kiln.host import checkpointing as memory
    from kiln.core.train.specs import SaveSpec
    from kiln.host.bake import bake
    model, clip, vae, dataset = setup
    with measure_peak("cpu") as peak:
        result = bake(model, clip, vae, dataset, NetworkSpec(rank=4, alpha=4.0), OptimizerSpec(lr=1e-3, scheduler="constant"),
             TrainConfig(max_steps=1, batch_size=4, seed=0, probe_samples=0, **cfg),
             SaveSpec(output_name=name, save_dtype="fp32", save_state=False))
    return peak.peak_bytes, result.report.checkpointing


def test_checkpointing_lowers_peak_memory(setup):
    off, off_stats = _one_step_peak(setup, "mem_off")
    on, on_stats = _one_step_peak(setup, "mem_on", gradient_checkpointing=True)
    assert off_stats.units == 0 and off_stats.recomputed == 0
    # Every block of the tiny UNet was checkpointed (conv_in, then ResBlock + SpatialTransformer of the input
    # level, ResBlock + SpatialTransformer + ResBlock in the middle, two output levels of two) and ran once;
    # all were recomputed in backward but the first two, which hold no adapter and get no gradient input.
    assert on_stats.units == 10 and on_stats.forwards == 10 and on_stats.recomputed == 8
    mib = 2 ** 20
    print(f"peak of one step at batch 4: {off / mib:.1f} MiB without checkpointing, {on / mib:.1f} MiB with")
    # 255.5 vs 77.4 MiB (3.3x) on both hosts; what is left with checkpointing is mostly the one recomputed
    # SpatialTransformer (the tiny UNet has four, which hold most of the activations) and its gradients.
    assert on < 0.37 * off, f"checkpointing: peak {on / mib:.1f} MiB vs {off / mib:.1f} MiB without"


def test_checkpoint_units_by_depth(host):
    from kiln.host.checkpointing import checkpoint_units, diffusion_blocks
    class Block(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.attn, self.act, self.mlp = torch.nn.Linear(4, 4), torch.nn.GELU(), torch.nn.Linear(4, 4)

    blocks = torch.nn.ModuleList([Block() for _ in range(3)])
    dm = torch.nn.Module()
    dm.double_blocks = blocks
    assert diffusion_blocks(dm) == list(blocks)
    assert checkpoint_units(dm, 1) == list(blocks)
    # Depth 2: the blocks' parts, without the parameter-free activation.
    assert checkpoint_units(dm, 2) == [m for b in blocks for m in (b.attn, b.mlp)]
    # A Sequential block's forward is not what the SD UNet calls: its layers are the units.
    seq = torch.nn.Module()
    seq.input_blocks = torch.nn.ModuleList([torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Linear(4, 4))])
    assert checkpoint_units(seq, 1) == list(seq.input_blocks[0])
    with pytest.raises(ValueError, match="depth"):
        checkpoint_units(dm, 0)


def test_depth_two_on_mmdit_wraps_only_parts_whose_forward_runs(host, tiny_assets):
    """SD3's joint blocks drive their context and x halves through the halves' own methods, never their
    forward: wrapped at depth 2 they would checkpoint nothing. Units are chosen among the modules the traced
    step called, so every unit ran and was recomputed in backward."""
    import nodes
    from kiln.core.data import DatasetConfig, load_dataset
    from kiln.core.net.spec import NetworkSpec
    from kiln.core.train.loop import TrainConfig
    from kiln.core.train.optim import OptimizerSpec
    from kiln.core.train.specs import SaveSpec
    from kiln.devtools import family_fixtures as ff
    from kiln.host import checkpointing as memory
    from kiln.host.bake import bake
    from conftest import REPO
    if ff.available("sd3"):
        pytest.skip(ff.available("sd3"))
    assets = ff.ensure_family_assets("sd3", REPO / ".cache" / "test-assets")
    model, _ = ff.load_model("sd3", assets.unet_name)
    with torch.inference_mode():
        vae = nodes.VAELoader().load_vae(assets.vae_name)[0]
    clip = ff.tiny_text_encoder("sd3", cache_dir=REPO / ".cache" / "test-assets")
    dataset = load_dataset(DatasetConfig(path=str(tiny_assets.dataset_dir), resolution=64, min_bucket_reso=64,
                                         max_bucket_reso=64, bucket_reso_steps=64))
    halves = [m for b in model.model.diffusion_model.joint_blocks for m in (b.context_block, b.x_block)]
    assert set(halves) <= set(memory.checkpoint_units(model.model.diffusion_model, 2))   # without the trace
    with torch.inference_mode():
        result = bake(model, clip, vae, dataset, NetworkSpec(rank=4, alpha=4.0, targets="attn_mlp"),
             OptimizerSpec(lr=1e-3, scheduler="constant"),
             TrainConfig(max_steps=1, batch_size=2, seed=0, probe_samples=0, gradient_checkpointing=True,
                         checkpoint_depth=2),
             SaveSpec(output_name="mem_sd3_depth2", save_dtype="fp32", save_state=False))
    stats = result.report.checkpointing
    assert stats.units > 0 and stats.forwards == stats.units, stats
    assert stats.recomputed > 0, stats
