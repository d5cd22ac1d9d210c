"""LoRA's fused bypass branch (core/net/modules/fused.py) computes what the plain branch computes: the same
output and the same gradients for x, lora_down and lora_up, on Linear, 3x3/strided/grouped Conv and 1x1 Conv,
with a multiplier, and in bf16 autocast; and it is the path LoRA takes when it can (and not when it cannot)."""
import pytest
import torch
import torch.nn as nn

from kiln.core.net.modules import fused
from kiln.core.net.modules.lora import LoRAModule

LAYERS = {
    "linear": (lambda: nn.Linear(24, 16), (2, 5, 24)),
    "linear_2d": (lambda: nn.Linear(24, 16), (7, 24)),
    "conv3x3": (lambda: nn.Conv2d(8, 12, 3, padding=1), (2, 8, 6, 6)),
    "conv_strided": (lambda: nn.Conv2d(8, 12, 3, stride=2, padding=1), (2, 8, 7, 7)),
    "conv_grouped": (lambda: nn.Conv2d(8, 12, 3, padding=1, groups=2), (2, 8, 6, 6)),
    "conv1x1": (lambda: nn.Conv2d(8, 12, 1), (3, 8, 5, 4)),
}


def adapted(kind, multiplier=1.0, seed=0):
    torch.manual_seed(seed)
    make, shape = LAYERS[kind]
    base = make().requires_grad_(False)
    lora = LoRAModule("l", base, rank=4, alpha=2.0, generator=torch.Generator().manual_seed(seed), multiplier=multiplier)
    with torch.no_grad():   # a trained up factor (zero at init would hide half the gradients)
        lora.lora_up.normal_(0, 0.3)
    x = torch.randn(shape, generator=torch.Generator().manual_seed(seed + 1))
    return base, lora, x


def step(base, lora, x, use_fused, device_type="cpu", autocast=False):
    """(output, grad x, grad down, grad up) of a loss through base + branch, fused or plain."""
    x = x.clone().requires_grad_(True)
    lora.zero_grad(set_to_none=True)
    with torch.autocast(device_type, dtype=torch.bfloat16, enabled=autocast):
        out = base(x)
        out = lora(x, out, base) if use_fused else lora._add_delta(x, out, base)
        loss = (out.float() * torch.linspace(-1, 1, out.numel()).reshape(out.shape)).sum()
    loss.backward()
    return out.detach().float(), x.grad, lora.lora_down.grad, lora.lora_up.grad


@pytest.mark.parametrize("kind", list(LAYERS))
@pytest.mark.parametrize("multiplier", [1.0, 0.7])
def test_fused_matches_plain_branch(kind, multiplier):
    base, lora, x = adapted(kind, multiplier)
    assert lora._fused_call(x, base(x)), "the fused path must be the one under test"
    plain = step(base, lora, x, use_fused=False)
    got = step(base, lora, x, use_fused=True)
    for name, a, b in zip(("out", "grad_x", "grad_down", "grad_up"), got, plain):
        assert a.shape == b.shape and a.dtype == b.dtype, name
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5, msg=name)
    assert plain[3].abs().sum() > 0 and plain[2].abs().sum() > 0


@pytest.mark.parametrize("kind", ["linear", "conv3x3"])
def test_fused_matches_plain_branch_under_bf16_autocast(kind):
    base, lora, x = adapted(kind)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert lora._fused_call(x, base(x))
    plain = step(base, lora, x, use_fused=False, autocast=True)
    got = step(base, lora, x, use_fused=True, autocast=True)
    for name, a, b in zip(("out", "grad_x", "grad_down", "grad_up"), got, plain):
        assert a.dtype == b.dtype, name
        torch.testing.assert_close(a.float(), b.float(), rtol=2e-2, atol=2e-2, msg=name)


def test_frozen_input_takes_no_input_gradient():
    """The first adapted layer's input needs no gradient: the fused backward skips that product."""
    base, lora, x = adapted("linear")
    out = lora(x, base(x), base)
    out.sum().backward()
    assert lora.lora_down.grad is not None and lora.lora_up.grad is not None


def test_plain_branch_taken_where_fusing_cannot_hold():
    base, lora, x = adapted("linear")
    out = base(x)
    assert lora._fused_call(x, out)
    assert not lora._fused_call(x, out.transpose(0, 1)), "a non-contiguous output has no flat view"
    assert not lora._fused_call(x, out.double()), "a delta of another dtype needs the plain branch's cast"
    lora.train()
    lora.dropout = 0.1
    assert not lora._fused_call(x, out), "dropout is drawn in the plain branch"
    assert not fused.fusable(x, torch.zeros(3))


def _graph_names(t):
    seen, todo, names = set(), [t.grad_fn], set()
    while todo:
        fn = todo.pop()
        if fn is None or fn in seen:
            continue
        seen.add(fn)
        names.add(type(fn).__name__)
        todo.extend(f for f, _ in fn.next_functions)
    return names


@pytest.mark.parametrize("use_fused", [True, False])
def test_linear_add_leaves_no_copy_slices_node(use_fused):
    """F.linear on a 3-D input returns a view of its 2-D product; adding into that view in place made autograd
    clone and copy the output-sized gradient through CopySlices at every adapted layer. The add goes into the
    viewed tensor instead, with the same result."""
    base, lora, x = adapted("linear")
    x = x.requires_grad_(True)     # an inner layer: its input carries a gradient
    out = base(x)
    assert out._base is not None, "this torch's F.linear no longer returns a view: the test checks nothing"
    expected = out.detach() + lora.delta_forward(x, base).detach()
    got = lora(x, out, base) if use_fused else lora._add_delta(x, out, base)
    assert got.shape == out.shape
    torch.testing.assert_close(got.detach(), expected)
    assert "CopySlices" not in _graph_names(got)
    got.sum().backward()
    assert x.grad is not None and lora.lora_down.grad is not None
