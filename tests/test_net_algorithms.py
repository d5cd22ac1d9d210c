"""Every network algorithm on a Linear, a 3x3 Conv and a 1x1 Conv: the training forward equals the layer
run with the weight the exported file means (the host's formulas), it learns a toy regression, and
export/load round-trips; and the host's own loader computes the same layer from the exported keys."""
import logging

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from kiln.core.lora.value import module_groups
from kiln.core.net.network import Network, TargetLayer
from kiln.core.net.registry import ALGORITHMS, algorithm_class
from kiln.core.net.spec import NetworkSpec

algorithm_class("lora")   # fills the registry

BASE = dict(rank=4, alpha=2.0, conv_rank=4, conv_alpha=2.0, targets="full", init_seed=1)
# name -> (spec, the file keys each module must carry). LoKr at rank 4 keeps both factors full on these
# small layers; rank 1 makes w2 low rank, and decompose_both makes w1 low rank too.
VARIANTS = {
    "lora": (NetworkSpec(algorithm="lora", **BASE), {"lora_up.weight", "lora_down.weight", "alpha"}),
    "loha": (NetworkSpec(algorithm="loha", **BASE), {"hada_w1_a", "hada_w1_b", "hada_w2_a", "hada_w2_b", "alpha"}),
    "lokr": (NetworkSpec(algorithm="lokr", **BASE), {"lokr_w1", "lokr_w2", "alpha"}),
    "lokr_low_rank_w2": (NetworkSpec(algorithm="lokr", **{**BASE, "rank": 1, "conv_rank": 1}),
                         {"lokr_w1", "lokr_w2_a", "lokr_w2_b", "alpha"}),
    "lokr_decompose_both": (NetworkSpec(algorithm="lokr", decompose_both=True, **{**BASE, "rank": 1, "conv_rank": 1}),
                            {"lokr_w1_a", "lokr_w1_b", "lokr_w2_a", "lokr_w2_b", "alpha"}),
    "ia3": (NetworkSpec(algorithm="ia3", **BASE), {"diff"}),
    "dylora": (NetworkSpec(algorithm="dylora", **{**BASE, "rank": 8, "conv_rank": 8}),
               {"lora_up.weight", "lora_down.weight", "alpha"}),
    "dora": (NetworkSpec(algorithm="dora", **BASE), {"lora_up.weight", "lora_down.weight", "alpha", "dora_scale"}),
    "full": (NetworkSpec(algorithm="full", **BASE), {"diff", "diff_b"}),
}


def test_every_registered_algorithm_is_covered():
    assert {s.algorithm for s, _ in VARIANTS.values()} == set(ALGORITHMS) == \
        {"lora", "loha", "lokr", "ia3", "dylora", "dora", "full"}


def layers(seed=0):
    g = torch.Generator().manual_seed(seed)
    mods = [nn.Linear(24, 16), nn.Conv2d(8, 12, 3, padding=1), nn.Conv2d(8, 12, 1)]
    with torch.no_grad():
        for m in mods:
            for p in m.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * 0.3)
            m.requires_grad_(False)
    return [TargetLayer("lora_unet_mid_attn1_to_q", "diffusion_model.middle_block.1.transformer_blocks.0.attn1.to_q",
                        mods[0], False, "MID"),
            TargetLayer("lora_unet_mid_conv", "diffusion_model.middle_block.0.in_layers.2", mods[1], False, "MID"),
            TargetLayer("lora_unet_mid_proj_in", "diffusion_model.middle_block.1.proj_in", mods[2], False, "MID")]


def inputs(seed=5, n=2):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(n, 5, 24, generator=g), torch.randn(n, 8, 6, 6, generator=g), torch.randn(n, 8, 6, 6, generator=g)]


def run(layer, x, weight=None, bias=None):
    m = layer.module
    weight = m.weight if weight is None else weight
    bias = m.bias if bias is None else bias
    if isinstance(m, nn.Conv2d):
        return F.conv2d(x, weight, bias, m.stride, m.padding)
    return F.linear(x, weight, bias)


def perturb(net, seed=3, size=0.05):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            if p.requires_grad:
                p.add_(torch.randn(p.shape, generator=g) * size)


def host_formula(w, b, t):
    """(weight, bias) a file's tensors mean for one layer, written out from the host's formulas
    (comfy/weight_adapter/{lora,loha,lokr,base}.py and comfy/lora.py, strength 1, float32)."""
    w = w.float()
    if "lora_up.weight" in t:
        up, down = t["lora_up.weight"].float(), t["lora_down.weight"].float()
        diff = (up.flatten(1) @ down.flatten(1)).reshape(w.shape) * (float(t["alpha"]) / down.shape[0])
        if "dora_scale" not in t:
            return w + diff, b
        calc = w + diff   # weight_decompose, input axis: the norm of the UPDATED weight per input column
        norm = calc.transpose(0, 1).reshape(w.shape[1], -1).norm(dim=1, keepdim=True)
        norm = norm.reshape(w.shape[1], *[1] * (w.dim() - 1)).transpose(0, 1) + torch.finfo(torch.float32).eps
        return calc * (t["dora_scale"].float() / norm), b
    if "hada_w1_a" in t:
        m1 = t["hada_w1_a"] @ t["hada_w1_b"]
        m2 = t["hada_w2_a"] @ t["hada_w2_b"]
        return w + (m1 * m2).reshape(w.shape) * float(t["alpha"]) / t["hada_w1_b"].shape[0], b
    if any(k.startswith("lokr_") for k in t):
        dim = None
        if "lokr_w1" in t:
            w1 = t["lokr_w1"]
        else:
            dim, w1 = t["lokr_w1_b"].shape[0], t["lokr_w1_a"] @ t["lokr_w1_b"]
        if "lokr_w2" in t:
            w2 = t["lokr_w2"]
        else:
            dim, w2 = t["lokr_w2_b"].shape[0], torch.mm(t["lokr_w2_a"], t["lokr_w2_b"])
        if w2.dim() == 4:
            w1 = w1[:, :, None, None]
        scale = float(t["alpha"]) / dim if dim is not None else 1.0
        return w + torch.kron(w1, w2).reshape(w.shape) * scale, b
    if "diff" in t:
        return w + t["diff"], (b + t["diff_b"] if "diff_b" in t else b)
    raise AssertionError(f"unknown layout {sorted(t)}")


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_training_forward_equals_the_layer_with_the_files_weight(variant):
    spec, keys = VARIANTS[variant]
    ls = layers()
    net = Network(spec, ls)
    perturb(net)
    net.train()   # the training forward (no dropout configured, so it is deterministic but for DyLoRA)
    if spec.algorithm == "dylora":
        net.eval()   # DyLoRA trains a random sub-rank per step; the file means the full rank
    groups = module_groups(net.export())
    xs = inputs()
    with net:
        got = [l.module(x) for l, x in zip(ls, xs)]
    for layer, x, out in zip(ls, xs, got):
        t = groups[layer.kohya_name]
        assert set(t) == keys, (variant, layer.kohya_name, sorted(t))
        w, b = host_formula(layer.module.weight, layer.module.bias, t)
        want = run(layer, x, w, b)
        assert not torch.allclose(want, run(layer, x), atol=1e-3), f"{variant}: the perturbed file changes nothing"
        torch.testing.assert_close(out, want, rtol=1e-4, atol=1e-5, msg=f"{variant} {layer.kohya_name}")


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_untrained_network_starts_at_the_base_model(variant):
    ls = layers()
    net = Network(VARIANTS[variant][0], ls)
    xs = inputs()
    with net:
        got = [l.module(x) for l, x in zip(ls, xs)]
    for layer, x, out in zip(ls, xs, got):
        # DoRA's eps moves the start by ~1e-7 relative, as it does in the host.
        torch.testing.assert_close(out, run(layer, x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_export_load_round_trip(variant):
    spec = VARIANTS[variant][0]
    a = Network(spec, layers())
    perturb(a)
    b = Network(spec.replace(init_seed=7), layers())
    exported = a.export()
    b.load_exported(exported)
    again = b.export()
    assert set(again) == set(exported)
    for k, v in exported.items():
        assert again[k].shape == v.shape, k
        torch.testing.assert_close(again[k], v, rtol=1e-5, atol=1e-6, msg=k)


def test_load_rejects_a_file_of_another_layout():
    lora = Network(VARIANTS["lora"][0], layers()).export()
    with pytest.raises(ValueError, match="lack"):
        Network(VARIANTS["loha"][0], layers()).load_exported(lora)
    lokr_full = Network(VARIANTS["lokr"][0], layers()).export()
    with pytest.raises(ValueError, match="lack"):
        Network(VARIANTS["lokr_low_rank_w2"][0], layers()).load_exported(lokr_full)


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_training_forward_of_a_wide_layer_holds_two_outputs_at_most(variant):
    """The adapted layer's training forward adds into the base output instead of forming the delta, a scaled
    copy and a sum beside it (four output-sized tensors at once before): a wide Linear's forward peaks at the
    base output plus the adapter's own output. Every targeted layer of every block adds this to a step's
    peak; the values themselves are checked by test_training_forward_equals_the_layer_with_the_files_weight."""
    from kiln.core.train.memory import measure_peak
    spec = VARIANTS[variant][0]
    base = nn.Linear(64, 2048)
    base.requires_grad_(False)
    net = Network(spec, [TargetLayer("lora_unet_mid_attn1_to_q",
                                     "diffusion_model.middle_block.1.transformer_blocks.0.attn1.to_q", base, False,
                                     "MID")])
    net.train()
    x = torch.randn(512, 64)
    with net, measure_peak("cpu") as peak:
        out = base(x)
    assert out.requires_grad, variant
    output_bytes = out.numel() * out.element_size()
    assert peak.peak_bytes < 2.5 * output_bytes, f"{variant}: peak {peak.peak_bytes / output_bytes:.2f} outputs"


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_learns_a_toy_regression(variant):
    """The student learns what a teacher of the same algorithm (random adapter weights) computes, on the
    Linear and the 3x3 Conv together."""
    spec = VARIANTS[variant][0]
    teacher_layers = layers()[:2]
    teacher = Network(spec, teacher_layers)
    perturb(teacher, seed=11, size=0.1)
    teacher.eval()
    xs = inputs(seed=9, n=8)[:2]
    with teacher, torch.no_grad():
        ys = [l.module(x) for l, x in zip(teacher_layers, xs)]
    ls = layers()[:2]
    net = Network(spec, ls)
    opt = torch.optim.Adam([p for p in net.parameters() if p.requires_grad], lr=1e-2)
    net.train()
    torch.manual_seed(0)
    losses = []
    with net:
        for _ in range(20):
            loss = sum(F.mse_loss(l.module(x), y) for l, x, y in zip(ls, xs, ys))
            losses.append(float(loss.detach()))
            opt.zero_grad()
            loss.backward()
            opt.step()
    assert losses[-1] < 0.5 * losses[0], (variant, losses[0], losses[-1])


@pytest.mark.parametrize("variant", sorted(VARIANTS))
@pytest.mark.parametrize("kind", ["dropout", "rank_dropout", "module_dropout"])
def test_each_dropout_acts_in_training_and_not_in_eval(variant, kind):
    spec = VARIANTS[variant][0].replace(**{kind: 0.5})
    ls = layers()
    net = Network(spec, ls)
    perturb(net)
    xs = inputs()
    with net, torch.no_grad():
        net.eval()
        ref = [l.module(x) for l, x in zip(ls, xs)]
        net.train()
        if variant == "dylora":   # its training forward draws a sub-rank: compare against a dropout-free one
            for a in net.adapters.values():
                a.sub_rank = lambda a=a: a.rank
        trained = []
        for seed in range(6):
            torch.manual_seed(seed)
            trained.append([l.module(x) for l, x in zip(ls, xs)])
        net.eval()
        again = [l.module(x) for l, x in zip(ls, xs)]
    for i in range(len(ls)):
        # Active in training: some draw differs from the eval output, and the draws differ among themselves.
        assert any(not torch.allclose(t[i], ref[i], atol=1e-6) for t in trained), (variant, kind, i)
        assert any(not torch.equal(t[i], trained[0][i]) for t in trained[1:]), (variant, kind, i)
        assert torch.equal(again[i], ref[i])   # and eval is untouched by it


def test_dylora_trains_leading_sub_ranks():
    ls = layers()
    net = Network(NetworkSpec(algorithm="dylora", rank=6, alpha=6, targets="attn", init_seed=1), ls[:1])
    adapter = next(iter(net.adapters.values()))
    torch.manual_seed(0)
    assert {adapter.sub_rank() for _ in range(50)} == {4, 6}
    net.train()
    torch.manual_seed(0)
    with net:
        for _ in range(20):
            net.zero_grad()
            ls[0].module(inputs()[0]).sum().backward()
            used = (adapter.lora_up.grad.abs().sum(0) > 0).sum().item()
            assert used in (4, 6)
            assert adapter.lora_up.grad[:, used:].abs().sum() == 0


def test_host_loader_computes_the_same_layer(host, caplog):
    """The host's own load_lora + calculate_weight on the exported keys: every key loaded, no error logged,
    and the patched layer computes what the adapter computes."""
    import comfy.lora
    for variant, (spec, _) in sorted(VARIANTS.items()):
        ls = layers()
        net = Network(spec, ls)
        perturb(net)
        net.eval()
        tensors = net.export()
        xs = inputs()
        with net, torch.no_grad():
            got = [l.module(x) for l, x in zip(ls, xs)]
        key_map = {l.kohya_name: f"{l.host_name}.weight" for l in ls}
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            patches = comfy.lora.load_lora(tensors, key_map, log_missing=True)
            expected = set(key_map.values())
            if spec.algorithm == "full":
                expected |= {f"{l.host_name}.bias" for l in ls}
            assert set(patches) == expected, variant
            for layer, x, out in zip(ls, xs, got):
                w_key, b_key = f"{layer.host_name}.weight", f"{layer.host_name}.bias"
                w = comfy.lora.calculate_weight([(1.0, patches[w_key], 1.0, None, None)],
                                                layer.module.weight.detach().clone().float(), w_key)
                b = layer.module.bias
                if b_key in patches:
                    b = comfy.lora.calculate_weight([(1.0, patches[b_key], 1.0, None, None)], b.detach().clone(), b_key)
                torch.testing.assert_close(run(layer, x, w, b), out, rtol=1e-4, atol=1e-5,
                                           msg=f"{variant} {layer.kohya_name}")
        problems = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
        assert not problems, (variant, problems)
