"""Every network algorithm on a Linear and a 3x3 Conv: bypass forward == forward with the merged weight,
export/load round trip, learning on a toy regression; and the host's own loader computes the same weight
from the exported keys."""
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from kiln_pack.core.net.network import Network, TargetLayer
from kiln_pack.core.net.registry import ALGORITHMS, algorithm_class
from kiln_pack.core.net.spec import NetworkSpec

algorithm_class("lora")
NAMES = sorted(ALGORITHMS)


def layers(seed=0):
    g = torch.Generator().manual_seed(seed)
    lin = nn.Linear(24, 16)
    conv = nn.Conv2d(8, 12, 3, padding=1)
    with torch.no_grad():
        for p in list(lin.parameters()) + list(conv.parameters()):
            p.copy_(torch.randn(p.shape, generator=g) * 0.3)
    lin.requires_grad_(False)
    conv.requires_grad_(False)
    return [TargetLayer("lora_unet_mid_attn1_to_q", "diffusion_model.middle_block.1.transformer_blocks.0.attn1.to_q", lin, False, "MID"),
            TargetLayer("lora_unet_mid_conv", "diffusion_model.middle_block.0.in_layers.2", conv, False, "MID")]


def spec(name):
    return NetworkSpec(algorithm=name, rank=4, alpha=2.0, conv_rank=4, conv_alpha=2.0, targets="full", init_seed=1)


def perturb(net, seed=3):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            if p.requires_grad:
                p.add_(torch.randn(p.shape, generator=g) * 0.05)


def host_style_weight(name, w, t):
    """The delta each file layout means, written out from the host's formulas (comfy/weight_adapter)."""
    w = w.float()
    if "lora_up.weight" in t:
        up, down = t["lora_up.weight"].float(), t["lora_down.weight"].float()
        scale = float(t["alpha"]) / down.shape[0]
        diff = (up.flatten(1) @ down.flatten(1)).reshape(w.shape) * scale
        if "dora_scale" in t:
            calc = w + diff
            norm = calc.transpose(0, 1).reshape(w.shape[1], -1).norm(dim=1).reshape(1, w.shape[1], *[1] * (w.dim() - 2))
            return calc * (t["dora_scale"] / (norm + torch.finfo(torch.float32).eps))
        return w + diff
    if "hada_w1_a" in t:
        m1 = t["hada_w1_a"] @ t["hada_w1_b"]
        m2 = t["hada_w2_a"] @ t["hada_w2_b"]
        return w + (m1 * m2).reshape(w.shape) * float(t["alpha"]) / t["hada_w1_b"].shape[0]
    if "lokr_w1" in t:
        if "lokr_w2_a" in t:
            w2, scale = t["lokr_w2_a"] @ t["lokr_w2_b"], float(t["alpha"]) / t["lokr_w2_b"].shape[0]
        else:
            w2, scale = t["lokr_w2"], 1.0
        w1 = t["lokr_w1"]
        if w2.dim() == 4:
            w1 = w1[:, :, None, None]
        return w + torch.kron(w1, w2).reshape(w.shape) * scale
    if "diff" in t:
        return w + t["diff"]
    raise AssertionError(f"{name}: unknown layout {sorted(t)}")


@pytest.mark.parametrize("name", NAMES)
def test_bypass_forward_equals_merged_weight_from_the_file(name):
    ls = layers()
    net = Network(spec(name), ls)
    perturb(net)
    net.eval()
    exported = net.export()
    from kiln_pack.core.lora.value import module_groups
    groups = module_groups(exported)
    x_lin = torch.randn(2, 5, 24)
    x_conv = torch.randn(2, 8, 6, 6)
    with net:
        got_lin, got_conv = ls[0].module(x_lin), ls[1].module(x_conv)
    w_lin = host_style_weight(name, ls[0].module.weight, groups[ls[0].kohya_name])
    w_conv = host_style_weight(name, ls[1].module.weight, groups[ls[1].kohya_name])
    torch.testing.assert_close(got_lin, F.linear(x_lin, w_lin, ls[0].module.bias), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(got_conv, F.conv2d(x_conv, w_conv, ls[1].module.bias, padding=1), rtol=1e-4, atol=1e-5)
    assert not any(k.startswith("kiln_") for k in exported)


@pytest.mark.parametrize("name", NAMES)
def test_export_load_round_trip(name):
    a = Network(spec(name), layers())
    perturb(a)
    b = Network(spec(name), layers())
    b.load_exported(a.export())
    for k, v in a.export().items():
        torch.testing.assert_close(b.export()[k], v, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", NAMES)
def test_learns_a_toy_regression(name):
    """The student learns what a teacher of the same algorithm (random adapter weights) computes."""
    teacher_layers = layers()
    teacher = Network(spec(name), teacher_layers)
    perturb(teacher, seed=11)
    perturb(teacher, seed=12)
    teacher.eval()
    g = torch.Generator().manual_seed(9)
    x = torch.randn(64, 24, generator=g)
    with teacher, torch.no_grad():
        y = teacher_layers[0].module(x)
    ls = layers()
    net = Network(spec(name), ls)
    opt = torch.optim.Adam([p for p in net.parameters() if p.requires_grad], lr=1e-2)
    net.train()
    torch.manual_seed(0)
    with net:
        first = None
        for _ in range(80):
            loss = F.mse_loss(ls[0].module(x), y)
            first = first if first is not None else float(loss.detach())
            opt.zero_grad()
            loss.backward()
            opt.step()
    assert float(loss.detach()) < 0.5 * first, (name, first, float(loss.detach()))


def test_host_loader_computes_the_same_weight(host):
    import comfy.lora
    for name in NAMES:
        ls = layers()
        net = Network(spec(name), ls)
        perturb(net)
        net.eval()
        tensors = net.export()
        key_map = {l.kohya_name: f"{l.host_name}.weight" for l in ls}
        patches = comfy.lora.load_lora(tensors, key_map, log_missing=True)
        assert set(patches) == set(key_map.values()), name
        for layer in ls:
            w = layer.module.weight.detach().clone()
            got = comfy.lora.calculate_weight([(1.0, patches[f"{layer.host_name}.weight"], 1.0, None, None)],
                                              w.clone(), f"{layer.host_name}.weight")
            want = host_style_weight(name, w, {k.split(".", 1)[1]: v for k, v in tensors.items()
                                                if k.startswith(layer.kohya_name + ".")})
            torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5, msg=f"{name} {layer.kohya_name}")
