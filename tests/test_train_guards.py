"""A run that would train nothing stops with an error naming the hooked layers and what the forward ran."""
import pytest
import torch

from kiln.core.net.network import Network
from kiln.core.net.spec import NetworkSpec
from kiln.core.train.guards import NoTrainingSignal
from kiln.core.train.loop import TrainConfig, Trainer
from kiln.core.train.optim import OptimizerSpec
from toys import ToyDataset, ToyDenoiser, ToyLatents, ToyModel

SPEC = NetworkSpec(rank=4, alpha=4, conv_rank=4, conv_alpha=4, targets="full")


def test_forward_that_skips_the_hooked_layers_stops_after_the_first_step():
    model = ToyModel()
    net = Network(SPEC, model.layers())
    # The forward runs another copy of the denoiser: the hooked layers never see a call (what happens
    # when a host runs modules other than the ones its state dict names).
    other = ToyDenoiser()
    model.net = other
    saves = []
    from kiln.core.train.loop import TrainHooks
    trainer = Trainer(TrainConfig(max_steps=6, seed=0, probe_samples=0), ToyDataset(), net,
                      OptimizerSpec(lr=1e-2, scheduler="constant"), model, ToyLatents(),
                      TrainHooks(save=lambda step, final: saves.append(step)))
    with net, pytest.raises(NoTrainingSignal) as err:
        trainer.run()
    msg = str(err.value)
    assert "the loss does not depend on any adapter" in msg
    assert "Hooked 3 layers" in msg and "ran 0 of them" in msg and "the forward (ToyModel)" in msg
    assert "lora_unet_input_blocks_0_0" in msg and "1x Conv2d(4, 16, 1, 1)" in msg
    assert trainer.last_result.step == 0 and saves == []


def test_optimizer_that_never_moves_the_adapters_stops():
    model = ToyModel()
    net = Network(SPEC, model.layers())
    trainer = Trainer(TrainConfig(max_steps=20, seed=0, probe_samples=0), ToyDataset(), net,
                      OptimizerSpec(lr=1e-2, scheduler="constant"), model, ToyLatents())
    real_run_step = torch.optim.AdamW.step
    # Gradients arrive but every step is skipped, as an fp16 GradScaler does on inf gradients.
    torch.optim.AdamW.step = lambda self, closure=None: None
    try:
        with net, pytest.raises(NoTrainingSignal, match="after 10 steps every adapter parameter is still"):
            trainer.run()
    finally:
        torch.optim.AdamW.step = real_run_step


def test_a_normal_run_passes_the_guard():
    model = ToyModel()
    net = Network(SPEC, model.layers())
    trainer = Trainer(TrainConfig(max_steps=12, seed=0, probe_samples=0), ToyDataset(), net,
                      OptimizerSpec(lr=1e-2, scheduler="constant", warmup_steps=0), model, ToyLatents())
    with net:
        assert trainer.run().step == 12


def test_an_all_zero_layer_after_the_hooked_ones_is_named():
    # A zeroed output layer (as in a checkpoint whose output conv is zero) passes no gradient back: adapters
    # before it get exactly zero, and the error names that layer and the way out.
    model = ToyModel()
    with torch.no_grad():
        model.net.conv_out.weight.zero_()
    layers = [layer for layer in model.layers() if not layer.kohya_name.endswith("proj_out")]
    net = Network(SPEC, layers)
    trainer = Trainer(TrainConfig(max_steps=6, seed=0, probe_samples=0), ToyDataset(), net,
                      OptimizerSpec(lr=1e-2, scheduler="constant"), model, ToyLatents())
    with net, pytest.raises(NoTrainingSignal) as err:
        trainer.run()
    msg = str(err.value)
    assert "no adapter parameter received a gradient" in msg
    assert "1 layer(s) with an all-zero weight and no adapter (conv_out)" in msg and "targets 'full'" in msg
    # With an adapter on that layer itself the same model trains (the guard stays quiet).
    model2 = ToyModel()
    with torch.no_grad():
        model2.net.conv_out.weight.zero_()
    net2 = Network(SPEC, model2.layers())
    trainer2 = Trainer(TrainConfig(max_steps=12, seed=0, probe_samples=0), ToyDataset(), net2,
                       OptimizerSpec(lr=1e-2, scheduler="constant"), model2, ToyLatents())
    with net2:
        assert trainer2.run().step == 12
