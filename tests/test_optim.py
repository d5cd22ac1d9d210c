"""Optimizers and schedulers: every optimizer builds and reduces a quadratic with per-group learning
rates honoured; each schedule follows its formula (warmup, restarts, floor) and resumes exactly."""
import math

import pytest
import torch

from kiln.core.net.network import Network
from kiln.core.net.spec import NetworkSpec
from kiln.core.train.optim import OPTIMIZERS, SCHEDULERS, OptimizerSpec, build_optimizer, build_scheduler
from toys import ToyModel

ON_CPU = sorted(n for n in OPTIMIZERS if n != "adamw8bit")


def test_the_issues_optimizers_are_all_there():
    assert set(OPTIMIZERS) == {"adamw", "adamw8bit", "prodigy", "lion", "adafactor", "came", "sgd",
                               "schedulefree_adamw"}




@pytest.mark.parametrize("name", ON_CPU)
def test_every_optimizer_reduces_a_quadratic(name):
    g = torch.Generator().manual_seed(0)
    p = torch.nn.Parameter(torch.randn(8, 8, generator=g))
    frozen = torch.nn.Parameter(torch.randn(4, generator=g))
    start = float((p.detach() ** 2).sum())
    lr = 1.0 if name == "prodigy" else 1e-2   # Prodigy's lr is a multiplier on its own estimate
    opt = build_optimizer(OptimizerSpec(name=name, lr=lr, weight_decay=0.0),
                          [{"params": [p], "lr": lr}, {"params": [frozen], "lr": 0.0}])
    if hasattr(opt, "train"):
        opt.train()   # schedule-free optimizers switch between train and eval weights
    before = frozen.detach().clone()
    for _ in range(5):
        opt.zero_grad()
        ((p ** 2).sum() + (frozen ** 2).sum()).backward()
        opt.step()
    if hasattr(opt, "eval"):
        opt.eval()
    assert float((p.detach() ** 2).sum()) < start, name
    if name != "prodigy":   # Prodigy steps every group with the first group's lr (as the original does)
        assert torch.equal(frozen.detach(), before), f"{name} moved a parameter whose group has lr 0"


def test_adamw8bit_says_what_to_do_on_cpu():
    with pytest.raises(ValueError, match="CUDA") as err:
        build_optimizer(OptimizerSpec(name="adamw8bit"), [{"params": [torch.nn.Parameter(torch.ones(1))]}], "cpu")
    assert "'adamw'" in str(err.value)


def test_unknown_names_list_the_choices():
    with pytest.raises(ValueError, match="adamw"):
        build_optimizer(OptimizerSpec(name="adam9"), [{"params": [torch.nn.Parameter(torch.ones(1))]}])
    opt = torch.optim.SGD([torch.nn.Parameter(torch.ones(1))], lr=1.0)
    with pytest.raises(ValueError, match="cosine"):
        build_scheduler(OptimizerSpec(scheduler="exponential"), opt, 10)


def lrs(spec, total, groups=(1.0,)):
    """The learning rate each step trains with, per param group (lists of lists)."""
    params = [torch.nn.Parameter(torch.ones(1)) for _ in groups]
    opt = torch.optim.SGD([{"params": [p], "lr": spec.lr * f} for p, f in zip(params, groups)], lr=spec.lr)
    sched = build_scheduler(spec, opt, total)
    out = []
    for _ in range(total):
        out.append([g["lr"] for g in opt.param_groups])
        opt.step()
        sched.step()
    return [v[0] for v in out] if len(groups) == 1 else out


def cosine(p):
    return 0.5 * (1 + math.cos(math.pi * p))


def test_constant_and_warmup():
    assert lrs(OptimizerSpec(lr=2.0, scheduler="constant"), 6) == [2.0] * 6
    warm = lrs(OptimizerSpec(lr=1.0, scheduler="constant_with_warmup", warmup_steps=4), 10)
    assert warm[:4] == pytest.approx([0.25, 0.5, 0.75, 1.0]) and warm[4:] == [1.0] * 6
    # A warmup ratio counts in steps of the run: 0.2 of 10 steps is 2.
    assert lrs(OptimizerSpec(lr=1.0, scheduler="linear", warmup_ratio=0.2), 10)[:3] == pytest.approx([0.5, 1.0, 1.0])
    # warmup_steps wins over a ratio.
    assert lrs(OptimizerSpec(lr=1.0, scheduler="constant_with_warmup", warmup_steps=5, warmup_ratio=0.5), 10)[:2] == \
        pytest.approx([0.2, 0.4])


def test_linear_cosine_polynomial_with_floor_and_warmup():
    total, warm, floor = 20, 4, 0.1

    def after(i):   # progress after warmup
        return (i - warm) / (total - warm)

    lin = lrs(OptimizerSpec(lr=1.0, scheduler="linear", warmup_steps=warm, min_lr_ratio=floor), total)
    cos = lrs(OptimizerSpec(lr=1.0, scheduler="cosine", warmup_steps=warm, min_lr_ratio=floor), total)
    poly = lrs(OptimizerSpec(lr=1.0, scheduler="polynomial", power=2.0, warmup_steps=warm, min_lr_ratio=floor), total)
    for i in (0, 3):
        assert lin[i] == cos[i] == poly[i] == pytest.approx((i + 1) / warm)
    for i in (4, 9, 15, 19):
        assert lin[i] == pytest.approx(floor + (1 - floor) * (1 - after(i)))
        assert cos[i] == pytest.approx(floor + (1 - floor) * cosine(after(i)))
        assert poly[i] == pytest.approx(floor + (1 - floor) * (1 - after(i)) ** 2)
    assert min(lin + cos + poly) >= floor
    # Without a floor the schedules head to zero (diffusers' formulas).
    assert lrs(OptimizerSpec(lr=1.0, scheduler="cosine"), 10) == pytest.approx([cosine(i / 10) for i in range(10)])


def test_cosine_with_restarts():
    total, cycles, floor = 30, 3, 0.05
    got = lrs(OptimizerSpec(lr=1.0, scheduler="cosine_with_restarts", num_cycles=cycles, min_lr_ratio=floor), total)
    for i in range(total):
        assert got[i] == pytest.approx(floor + (1 - floor) * cosine((cycles * i / total) % 1.0)), i
    assert got[0] == got[10] == got[20] == pytest.approx(1.0)      # each cycle restarts at the full rate
    assert got[9] < 0.1 and got[19] < 0.1 and got[29] < 0.1        # ... and ends near the floor
    one = lrs(OptimizerSpec(lr=1.0, scheduler="cosine_with_restarts", num_cycles=1), 10)
    assert one == pytest.approx(lrs(OptimizerSpec(lr=1.0, scheduler="cosine"), 10))
    warm = lrs(OptimizerSpec(lr=1.0, scheduler="cosine_with_restarts", num_cycles=2, warmup_steps=2), 12)
    assert warm[:3] == pytest.approx([0.5, 1.0, 1.0]) and warm[7] == pytest.approx(1.0)


def test_every_schedule_scales_each_group_and_resumes_exactly():
    for name in SCHEDULERS:
        spec = OptimizerSpec(lr=1.0, scheduler=name, warmup_steps=3, num_cycles=2, min_lr_ratio=0.1)
        both = lrs(spec, 12, groups=(1.0, 0.5))
        assert all(te == pytest.approx(unet * 0.5) for unet, te in both), name
        # Resume: a fresh optimizer and scheduler loaded from the state at step 5 continue the same curve.
        p = torch.nn.Parameter(torch.ones(1))
        opt = torch.optim.SGD([p], lr=1.0)
        sched = build_scheduler(spec, opt, 12)
        for _ in range(5):
            opt.step()
            sched.step()
        p2 = torch.nn.Parameter(torch.ones(1))
        opt2 = torch.optim.SGD([p2], lr=1.0)
        sched2 = build_scheduler(spec, opt2, 12)
        opt2.load_state_dict(opt.state_dict())
        sched2.load_state_dict(sched.state_dict())
        rest = []
        for _ in range(7):
            rest.append(opt2.param_groups[0]["lr"])
            opt2.step()
            sched2.step()
        assert rest == pytest.approx([v[0] for v in both[5:]]), name


def test_block_rank_and_learning_rate_weights():
    model = ToyModel()
    spec = NetworkSpec(rank=8, alpha=8, conv_rank=8, conv_alpha=8, targets="full",
                       block_rank_weights=(("MID", 0.5),), block_lr_weights=(("MID", 3.0),))
    net = Network(spec, model.layers())
    assert all(a.rank == 4 for a in net.adapters.values())
    assert all(abs(a.scale - 1.0) < 1e-6 for a in net.adapters.values())   # alpha follows the rank
    groups = net.param_groups(1e-4)
    assert [g["lr"] for g in groups] == [pytest.approx(3e-4)]
    with pytest.raises(ValueError, match="selects no layers"):
        Network(spec.replace(block_rank_weights=(("MID", 0.0),)), model.layers())
