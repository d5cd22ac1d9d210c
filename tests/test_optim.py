"""Optimizers and schedulers: every optimizer builds and steps; each schedule follows its formula."""
import math

import pytest
import torch

from kiln_pack.core.net.network import Network
from kiln_pack.core.net.spec import NetworkSpec
from kiln_pack.core.train.optim import OPTIMIZERS, SCHEDULERS, OptimizerSpec, build_optimizer, build_scheduler
from toys import ToyModel


@pytest.mark.parametrize("name", sorted(n for n in OPTIMIZERS if n != "adamw8bit"))
def test_every_optimizer_steps(name):
    p = torch.nn.Parameter(torch.ones(4, 4))
    opt = build_optimizer(OptimizerSpec(name=name, lr=1.0 if name == "prodigy" else 1e-2), [{"params": [p]}])
    for _ in range(3):
        opt.zero_grad()
        (p ** 2).sum().backward()
        opt.step()
    assert not torch.equal(p.detach(), torch.ones(4, 4)), name


def test_adamw8bit_says_what_to_do_on_cpu():
    with pytest.raises(ValueError, match="CUDA"):
        build_optimizer(OptimizerSpec(name="adamw8bit"), [{"params": [torch.nn.Parameter(torch.ones(1))]}], "cpu")


def lrs(spec, total):
    p = torch.nn.Parameter(torch.ones(1))
    opt = torch.optim.SGD([p], lr=spec.lr)
    sched = build_scheduler(spec, opt, total)
    out = []
    for _ in range(total):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


def test_schedules_follow_their_formulas():
    lr = 1.0
    assert lrs(OptimizerSpec(lr=lr, scheduler="constant"), 10) == [1.0] * 10
    warm = lrs(OptimizerSpec(lr=lr, scheduler="constant_with_warmup", warmup_steps=4), 10)
    assert warm[:4] == pytest.approx([0.25, 0.5, 0.75, 1.0]) and warm[4:] == [1.0] * 6
    lin = lrs(OptimizerSpec(lr=lr, scheduler="linear"), 10)
    assert lin == pytest.approx([1 - i / 10 for i in range(10)])
    cos = lrs(OptimizerSpec(lr=lr, scheduler="cosine", min_lr_ratio=0.1), 10)
    assert cos == pytest.approx([0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * i / 10)) for i in range(10)])
    restarts = lrs(OptimizerSpec(lr=lr, scheduler="cosine_with_restarts", num_cycles=2), 10)
    assert restarts[0] == pytest.approx(1.0) and restarts[5] == pytest.approx(1.0) and restarts[4] < 0.2
    poly = lrs(OptimizerSpec(lr=lr, scheduler="polynomial", power=2.0), 10)
    assert poly == pytest.approx([(1 - i / 10) ** 2 for i in range(10)])
    ratio = lrs(OptimizerSpec(lr=lr, scheduler="linear", warmup_ratio=0.2), 10)
    assert ratio[:2] == pytest.approx([0.5, 1.0])
    assert set(SCHEDULERS) == {"constant", "constant_with_warmup", "linear", "cosine", "cosine_with_restarts", "polynomial"}


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
