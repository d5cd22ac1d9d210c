"""The training loop on toy stand-ins: learning, exact resume, interrupt saves, NaN stops."""
import pytest
import torch

from kiln.core.net.network import Network
from kiln.core.net.spec import NetworkSpec
from kiln.core.train.loop import TrainConfig, Trainer, TrainHooks, TrainingDiverged
from kiln.core.train.optim import OptimizerSpec
from kiln.core.train.state import load_state, save_state
from toys import ToyDataset, ToyLatents, ToyModel

SPEC = NetworkSpec(rank=4, alpha=4, conv_rank=4, conv_alpha=4, targets="full")
OPT = OptimizerSpec(lr=3e-2, scheduler="cosine", warmup_steps=2)


def make(cfg, hooks=None):
    model = ToyModel()
    net = Network(SPEC, model.layers())
    return Trainer(cfg, ToyDataset(), net, OPT, model, ToyLatents(), hooks), net


def test_training_lowers_fixed_sample_loss():
    trainer, net = make(TrainConfig(max_steps=40, seed=1))
    with net:
        result = trainer.run()
    assert result.step == 40 and len(result.losses) == 40
    assert result.probe_end < 0.8 * result.probe_start


def test_step_arithmetic_and_accumulation():
    trainer, net = make(TrainConfig(epochs=3, batch_size=2, grad_accum=2, seed=0, probe_samples=0))
    # 6 images x 2 repeats / batch 2 = 6 micro-batches per epoch; x3 epochs / accumulation 2 = 9 steps
    assert trainer.total_steps == 9
    with net:
        assert trainer.run().step == 9


def test_resume_reproduces_an_uninterrupted_run(tmp_path):
    cfg = TrainConfig(max_steps=12, seed=3, probe_samples=0)
    full, full_net = make(cfg)
    with full_net:
        full.run()
    expected = full_net.export()

    saved = {}
    first, first_net = make(TrainConfig(max_steps=12, seed=3, probe_samples=0, save_every_n_steps=5),
                            TrainHooks(save=lambda step, final: saved.setdefault(step, step)))
    first.hooks.save = lambda step, final: save_state(tmp_path / f"s{step}", first.state(step, {}))
    with first_net:
        first.run()
    resumed, resumed_net = make(cfg)
    with resumed_net:
        result = resumed.run(load_state(tmp_path / "s10"))
    assert result.step == 12 and [s for s, _ in result.losses] == [11, 12]
    got = resumed_net.export()
    for k in expected:
        torch.testing.assert_close(got[k], expected[k], rtol=0, atol=1e-6)


class Stop(Exception):
    pass


def test_interrupt_saves_the_last_good_state_and_reraises(tmp_path):
    calls = {"n": 0}

    def check():
        calls["n"] += 1
        if calls["n"] == 6:
            raise Stop()
    saves = []
    trainer, net = make(TrainConfig(max_steps=20, seed=0, probe_samples=0),
                        TrainHooks(check_interrupt=check, interrupt_types=(Stop,),
                                   save=lambda step, final: saves.append((step, final))))
    with net, pytest.raises(Stop):
        trainer.run()
    assert saves == [(5, True)]
    assert trainer.last_result.interrupted


def test_nan_loss_stops_with_a_clear_error():
    trainer, net = make(TrainConfig(max_steps=5, seed=0, probe_samples=0))
    trainer.model.predict_x0 = lambda x_t, sigma, conds: x_t * float("nan")
    with net, pytest.raises(TrainingDiverged, match="last good save is kept"):
        trainer.run()


def test_ema_weights_are_saved_and_resume_exactly(tmp_path):
    cfg = TrainConfig(max_steps=8, seed=2, probe_samples=0, ema_decay=0.9)
    full, full_net = make(cfg)
    with full_net:
        full.run()
        live = full_net.export()
        with full.ema_applied():
            ema = full_net.export()
        assert torch.equal(full_net.export()["lora_unet_input_blocks_0_0.lora_up.weight"],
                           live["lora_unet_input_blocks_0_0.lora_up.weight"])
    key = "lora_unet_input_blocks_0_0.lora_up.weight"
    assert not torch.allclose(ema[key], live[key])
    first, first_net = make(TrainConfig(max_steps=8, seed=2, probe_samples=0, ema_decay=0.9, save_every_n_steps=4))
    first.hooks.save = lambda step, final: save_state(tmp_path / f"s{step}", first.state(step, {}))
    with first_net:
        first.run()
    resumed, resumed_net = make(cfg)
    with resumed_net:
        resumed.run(load_state(tmp_path / "s4"))
        with resumed.ema_applied():
            torch.testing.assert_close(resumed_net.export()[key], ema[key], rtol=0, atol=1e-6)


def test_masked_loss_ignores_the_masked_out_area():
    cfg = TrainConfig(max_steps=1, seed=0, probe_samples=0, masked_loss=True)
    trainer, net = make(cfg)
    refs = trainer.dataset.epoch_plan(0, 2, 0)[0]
    half = torch.zeros(8, 8)
    half[:, :4] = 1
    trainer.dataset.load_mask = lambda ref: half
    with net:
        base = float(trainer.micro_loss(0, refs).detach())
        # Changing the prediction only where the mask is zero leaves the masked loss unchanged.
        orig = trainer.model.predict_x0

        def spoil(x_t, sigma, conds):
            out = orig(x_t, sigma, conds).clone()
            out[..., :, 2:] += 100.0
            return out
        trainer.model.predict_x0 = spoil
        assert float(trainer.micro_loss(0, refs).detach()) == pytest.approx(base, rel=1e-5)
        trainer.dataset.load_mask = lambda ref: None
        assert float(trainer.micro_loss(0, refs).detach()) > base * 10


def test_validation_loss_on_held_out_samples():
    trainer, net = make(TrainConfig(max_steps=20, seed=0, probe_samples=0, validation_every_n_steps=10))
    held = ToyDataset(n=2, repeats=1)
    held.latents = held.latents * 0.5
    trainer.validation = held
    with net:
        result = trainer.run()
    assert [s for s, _ in result.validation] == [10, 20]
    assert all(v > 0 for _, v in result.validation)


def test_each_wan22_expert_trains_only_its_side_of_the_boundary():
    """Wan 2.2 A14B: the high-noise expert sees noise levels above the boundary, the low-noise expert the rest, on
    the model's own (shifted) schedule."""
    import torch
    from kiln.core.train.experts import ExpertSpec, for_expert
    from kiln.core.train.objective import ObjectiveSpec, sample_percents
    shift = 8.0

    def percent_to_sigma(p):   # a flow schedule with Wan's shift, as the host's model_sampling gives it
        t = 1.0 - p
        return shift * t / (1 + (shift - 1) * t)
    gen = torch.Generator().manual_seed(0)
    high = for_expert(ObjectiveSpec(), ExpertSpec("high_noise", 0.875), percent_to_sigma)
    low = for_expert(ObjectiveSpec(), ExpertSpec("low_noise", 0.875), percent_to_sigma)
    assert high.max_timestep == pytest.approx(low.min_timestep) and high.min_timestep == 0 and low.max_timestep == 1
    assert all(percent_to_sigma(p) >= 0.875 - 1e-6 for p in sample_percents(high, 200, gen))
    assert all(percent_to_sigma(p) <= 0.875 + 1e-6 for p in sample_percents(low, 200, gen))
    assert for_expert(ObjectiveSpec(), ExpertSpec(), percent_to_sigma) == ObjectiveSpec()
    with pytest.raises(ValueError, match="outside the objective"):
        for_expert(ObjectiveSpec(min_timestep=0.9), ExpertSpec("high_noise", 0.875), percent_to_sigma)
