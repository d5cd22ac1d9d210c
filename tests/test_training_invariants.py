"""Training invariants: schedule-free weights at save time, adapters that
own only their own tensors, no device read-back per forward, the host's RNG left alone by a bake."""
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from kiln.core.net.network import Network
from kiln.core.net.spec import NetworkSpec
from kiln.core.train.loop import TrainConfig, Trainer, TrainHooks
from kiln.core.train.optim import OptimizerSpec
from toys import ToyDataset, ToyLatents, ToyModel

ALGORITHMS = ["lora", "loha", "lokr", "ia3", "dylora", "dora", "full"]


def _spec(algorithm="lora", **kw):
    return NetworkSpec(algorithm=algorithm, rank=4, alpha=2.0, conv_rank=4, conv_alpha=2.0, targets="full",
                       dora=algorithm == "dora", **kw)


def _trainer(cfg, spec=None, opt=None, hooks=None):
    model = ToyModel()
    net = Network(spec or _spec(), model.layers())
    return Trainer(cfg, ToyDataset(), net, opt or OptimizerSpec(lr=3e-2, scheduler="constant"), model,
                   ToyLatents(), hooks), net, model


# -- 1. schedule-free AdamW: saves, samples and the result use the averaged weights ----------------------
def test_schedule_free_saves_and_ends_on_the_averaged_weights():
    seen = []
    trainer, net, _ = _trainer(TrainConfig(max_steps=6, seed=0, probe_samples=2, save_every_n_steps=2,
                                           sample_every_n_steps=3),
                               opt=OptimizerSpec(name="schedulefree_adamw", lr=3e-2, scheduler="constant"))

    def modes(kind):
        return lambda step, *rest: seen.append((kind, step, [g["train_mode"] for g in trainer.optimizer.param_groups]))
    trainer.hooks.save, trainer.hooks.sample = modes("save"), modes("sample")
    with net:
        trainer.run()
    assert [(k, s) for k, s, _ in seen] == [("save", 2), ("sample", 3), ("save", 4), ("sample", 6)]
    assert all(not any(m) for _, _, m in seen), seen          # every save/sample saw eval (averaged) weights
    assert not any(g["train_mode"] for g in trainer.optimizer.param_groups)   # and the run ends on them
    # The averaged weights are not the training point: switching back to training moves them.
    averaged = {k: v.clone() for k, v in net.export().items()}
    trainer.optimizer.train()
    moved = net.export()
    assert any((moved[k] - averaged[k]).abs().max() > 1e-6 for k in averaged if k.endswith("lora_up.weight"))


def test_schedule_free_resume_continues_the_training_point(tmp_path):
    from kiln.core.train.state import load_state, save_state
    opt = OptimizerSpec(name="schedulefree_adamw", lr=3e-2, scheduler="constant")
    full, full_net, _ = _trainer(TrainConfig(max_steps=8, seed=3, probe_samples=0), opt=opt)
    with full_net:
        full.run()
    first, first_net, _ = _trainer(TrainConfig(max_steps=8, seed=3, probe_samples=0, save_every_n_steps=4), opt=opt)
    first.hooks.save = lambda step, final: save_state(tmp_path / f"s{step}", first.state(step, {}))
    with first_net:
        first.run()
    resumed, resumed_net, _ = _trainer(TrainConfig(max_steps=8, seed=3, probe_samples=0), opt=opt)
    with resumed_net:
        resumed.run(load_state(tmp_path / "s4"))
    expected, got = full_net.export(), resumed_net.export()
    for k in expected:
        torch.testing.assert_close(got[k], expected[k], rtol=0, atol=1e-6)


# -- 2. adapters never own the host's tensors ------------------------------------------------------------
@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_adapters_own_only_their_own_tensors(algorithm):
    model = ToyModel()
    host_tensors = {id(p) for p in model.net.parameters()}
    net = Network(_spec(algorithm), model.layers())
    names = [n for n, _ in net.named_parameters()] + list(net.state_dict())
    assert not [n for n in names if "base" in n], names
    assert not host_tensors & {id(p) for p in net.parameters()}
    net.to(torch.float64)
    assert all(p.dtype == torch.float32 for p in model.net.parameters())   # .to() stays on the adapters
    assert all(p.dtype == torch.float64 for p in net.parameters())


def test_dora_and_ia3_still_follow_the_live_base_weight():
    model = ToyModel()
    net = Network(_spec("dora"), model.layers())
    adapter = next(iter(net.adapters.values()))
    assert adapter.base_weight is model.net.conv_in.weight


# -- 3. the scale is a Python float: no device read-back per adapter per forward --------------------------
class _ReadBacks(TorchDispatchMode):
    """Counts tensor -> Python scalar conversions (``float(t)`` / ``.item()``: a device sync on CUDA)."""

    def __init__(self):
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func is torch.ops.aten._local_scalar_dense.default:
            self.count += 1
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_forward_reads_nothing_back_from_the_device(algorithm):
    model = ToyModel()
    net = Network(_spec(algorithm), model.layers())
    with torch.no_grad():
        for p in net.parameters():   # nonzero adapters, so every path of the delta runs
            p.add_(0.01)
    x_t = torch.randn(2, 4, 4, 4)
    sigma = torch.tensor([1.0, 2.0])
    conds = model.encode_text(["a", "b"])
    net.train(algorithm != "dylora")   # DyLoRA draws its sub-rank on the CPU in training; eval is the full rank
    with net, _ReadBacks() as reads:
        model.predict_x0(x_t, sigma, conds)
    assert reads.count == 0
    assert all(type(a.scale) is float for a in net.adapters.values())


def test_loaded_alpha_sets_the_scale():
    model = ToyModel()
    net = Network(_spec("lora"), model.layers())
    tensors = net.export()
    for k in tensors:
        if k.endswith(".alpha"):
            tensors[k] = torch.tensor(1.0)
    net.load_exported(tensors)
    assert all(a.scale == 1.0 / 4 and type(a.scale) is float for a in net.adapters.values())
    assert all(float(v) == 1.0 for k, v in net.export().items() if k.endswith(".alpha"))


# -- 5. the host's global RNG is the same after training as before ---------------------------------------
def test_training_with_dropouts_leaves_the_global_rng_alone():
    spec = _spec("lora", dropout=0.3, rank_dropout=0.3, module_dropout=0.3)
    trainer, net, _ = _trainer(TrainConfig(max_steps=4, seed=0, probe_samples=1), spec=spec)
    torch.manual_seed(1234)
    expected = torch.rand(4)
    torch.manual_seed(1234)
    with net:
        trainer.run()
    assert torch.equal(torch.rand(4), expected)


def test_dropouts_are_reproducible_per_step():
    spec = _spec("lora", dropout=0.3, rank_dropout=0.3, module_dropout=0.3)
    runs = []
    for noise in (1, 2):
        torch.manual_seed(noise)   # whatever the host's state, the run is the same
        trainer, net, _ = _trainer(TrainConfig(max_steps=4, seed=0, probe_samples=0), spec=spec)
        with net:
            trainer.run()
        runs.append(net.export())
    for k in runs[0]:
        assert torch.equal(runs[0][k], runs[1][k]), k


# -- 4. epochs and steps with gradient accumulation ------------------------------------------------------
def test_epoch_figures_count_optimizer_steps_with_accumulation():
    # 6 images x 2 repeats / batch 2 = 6 micro-batches per epoch; accumulation 3 -> 2 optimizer steps per epoch
    trainer, net, _ = _trainer(TrainConfig(epochs=3, batch_size=2, grad_accum=3, seed=0, probe_samples=0))
    assert trainer.micro_per_epoch == 6 and trainer.total_steps == 6
    assert [trainer.epochs_done(s) for s in range(1, 7)] == [0, 1, 1, 2, 2, 3]
    assert [trainer.epoch_of_step(s) for s in range(1, 7)] == [1, 1, 2, 2, 3, 3]
    text = trainer.plan_text(6)
    assert "6 batches of 2 per epoch (2 optimizer steps)" in text and "= 6 optimizer steps" in text
    saves = []
    trainer.cfg = TrainConfig(epochs=3, batch_size=2, grad_accum=3, seed=0, probe_samples=0, save_every_n_epochs=1)
    trainer.hooks.save = lambda step, final: saves.append((step, trainer.epochs_done(step)))
    with net:
        trainer.run()
    assert saves == [(2, 1), (4, 2)]   # the last epoch's save is the final one, written by the caller
