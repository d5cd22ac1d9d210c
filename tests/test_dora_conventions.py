"""DoRA conventions checked with lycoris-lora's own loader: Kiln's file (input axis) converted to the LyCORIS
convention loads in ``lycoris.kohya.create_network_from_weights`` on a torch model with the same module names
and gives the output Kiln trained; the unconverted file is refused there; converting back gives the input-axis
weight the host applies."""
import pytest
import torch
import torch.nn as nn

from kiln.core.lora.value import KilnLora, module_groups
from kiln.core.net.network import Network, TargetLayer
from kiln.core.net.spec import NetworkSpec
from kiln.core.tools.dora_convention import convention_of, convert_dora, dora_weight
from kiln.core.lora.algorithms import lora_factors

lycoris_kohya = pytest.importorskip("lycoris.kohya")

# Module paths as kohya names them (diffusers layout): a Linear, a 1x1 and a 3x3 Conv, one square.
PATHS = {"down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q": nn.Linear(24, 24),
         "down_blocks.0.attentions.0.transformer_blocks.0.ff.net.2": nn.Linear(32, 24),
         "down_blocks.0.attentions.0.proj_in": nn.Conv2d(8, 24, 1),
         "down_blocks.0.resnets.0.conv1": nn.Conv2d(8, 12, 3, padding=1)}


def tiny_unet(seed=0):
    """A torch model whose named_modules() are PATHS (what lycoris matches file names against)."""
    g = torch.Generator().manual_seed(seed)
    root = nn.Module()
    for path, layer in PATHS.items():
        layer = type(layer)(*_args(layer), **_kwargs(layer))
        with torch.no_grad():
            for p in layer.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * 0.3)
        layer.requires_grad_(False)
        parent = root
        *parents, leaf = path.split(".")
        for part in parents:
            if not hasattr(parent, part):
                parent.add_module(part, nn.Module())
            parent = getattr(parent, part)
        parent.add_module(leaf, layer)
    return root


def _args(layer):
    if isinstance(layer, nn.Linear):
        return layer.in_features, layer.out_features
    return layer.in_channels, layer.out_channels, layer.kernel_size


def _kwargs(layer):
    return {} if isinstance(layer, nn.Linear) else {"padding": layer.padding}


# The host's (LDM) names for the same layers: Kiln picks targets by these.
HOST_NAMES = {"down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q": "input_blocks.1.1.transformer_blocks.0.attn1.to_q",
              "down_blocks.0.attentions.0.transformer_blocks.0.ff.net.2": "input_blocks.1.1.transformer_blocks.0.ff.net.2",
              "down_blocks.0.attentions.0.proj_in": "input_blocks.1.1.proj_in",
              "down_blocks.0.resnets.0.conv1": "input_blocks.1.0.in_layers.2"}


def kohya(path):
    return "lora_unet_" + path.replace(".", "_")


def trained_dora(unet):
    layers = [TargetLayer(kohya(p), "diffusion_model." + HOST_NAMES[p], unet.get_submodule(p), False, "IN01")
              for p in PATHS]
    assert len(Network(NetworkSpec(algorithm="dora", rank=4, conv_rank=4, targets="full"), layers).adapters) == len(PATHS)
    net = Network(NetworkSpec(algorithm="dora", rank=4, alpha=2.0, conv_rank=4, conv_alpha=2.0, targets="full",
                              init_seed=1), layers)
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():   # stands for training: every factor and magnitude moved
        for p in net.parameters():
            if p.requires_grad:
                p.add_(torch.randn(p.shape, generator=g) * 0.1)
    net.eval()
    return net, layers


def inputs(seed=5):
    g = torch.Generator().manual_seed(seed)
    return {p: (torch.randn(2, 5, m.in_features, generator=g) if isinstance(m, nn.Linear)
                else torch.randn(2, m.in_channels, 6, 6, generator=g)) for p, m in PATHS.items()}


def run(unet, xs):
    return {p: unet.get_submodule(p)(x) for p, x in xs.items()}


def test_kiln_dora_file_converted_to_lycoris_gives_kiln_output_in_lycoris():
    unet = tiny_unet()
    net, layers = trained_dora(unet)
    xs = inputs()
    base_out = run(unet, xs)
    with net:
        kiln_out = run(unet, xs)
    kiln_file = net.export()
    assert all(convention_of(t["dora_scale"], PATHS_BY_NAME[n].weight.shape) == "comfyui"
               for n, t in module_groups(kiln_file).items())

    # Kiln's own file is refused by lycoris-lora: its scale is on the other axis.
    with pytest.raises(RuntimeError):
        lycoris_kohya.create_network_from_weights(1.0, None, None, None, tiny_unet(), weights_sd=dict(kiln_file))

    base = {kohya(p): unet.get_submodule(p).weight for p in PATHS}
    converted, reports = convert_dora(KilnLora(kiln_file, {}), base, "lycoris")
    assert len(reports) == len(PATHS) and max(r.relative_error for r in reports) < 1e-5
    for name, t in module_groups(converted.tensors).items():
        assert convention_of(t["dora_scale"], PATHS_BY_NAME[name].weight.shape) == "lycoris"

    target = tiny_unet()   # a fresh copy of the base: lycoris patches the forward of the modules it finds
    network, _ = lycoris_kohya.create_network_from_weights(1.0, None, None, None, target,
                                                           weights_sd=dict(converted.tensors))
    assert len(network.unet_loras) == len(PATHS)
    network.apply_to(None, target, apply_text_encoder=False, apply_unet=True)
    network.load_state_dict(dict(converted.tensors), strict=False)
    network.eval()
    with torch.no_grad():
        lyco_out = run(target, xs)
    for p in PATHS:
        change = (kiln_out[p] - base_out[p]).abs().max()
        assert change > 1e-2, f"{p}: the trained DoRA changes nothing"
        torch.testing.assert_close(lyco_out[p], kiln_out[p], rtol=1e-4, atol=1e-5, msg=p)


def test_lycoris_file_converts_back_to_the_input_axis_weight():
    unet = tiny_unet()
    net, _ = trained_dora(unet)
    kiln_file = net.export()
    base = {kohya(p): unet.get_submodule(p).weight for p in PATHS}
    lyco, _ = convert_dora(KilnLora(kiln_file, {}), base, "lycoris")
    back, reports = convert_dora(lyco, base, "comfyui")
    assert len(reports) == len(PATHS)
    for name, t in module_groups(back.tensors).items():
        w = base[name]
        f = lora_factors(t, name)
        assert convention_of(t["dora_scale"], w.shape) == "comfyui"
        k = module_groups(kiln_file)[name]
        kf = lora_factors(k, name)
        want = dora_weight(w, kf.up @ kf.down, k["dora_scale"], "comfyui")
        torch.testing.assert_close(dora_weight(w, f.up @ f.down, t["dora_scale"], "comfyui"), want,
                                   rtol=1e-4, atol=1e-5, msg=name)
    # Already in the asked convention: nothing changes.
    same, none = convert_dora(KilnLora(kiln_file, {}), base, "comfyui")
    assert none == [] and all(torch.equal(same.tensors[k], v) for k, v in kiln_file.items())


def test_truncated_rank_reports_its_error_and_a_missing_base_is_named():
    unet = tiny_unet()
    net, _ = trained_dora(unet)
    base = {kohya(p): unet.get_submodule(p).weight for p in PATHS}
    small, reports = convert_dora(KilnLora(net.export(), {}), base, "lycoris", rank=2)
    assert all(r.rank == 2 for r in reports) and max(r.relative_error for r in reports) > 1e-3
    assert all(t.shape[0] == 2 for k, t in small.tensors.items() if k.endswith("lora_down.weight"))
    missing = dict(base)
    missing.pop(kohya("down_blocks.0.resnets.0.conv1"))
    with pytest.raises(ValueError, match="down_blocks_0_resnets_0_conv1.*base model"):
        convert_dora(KilnLora(net.export(), {}), missing, "lycoris")


PATHS_BY_NAME = {kohya(p): m for p, m in PATHS.items()}


def test_cli_convert_writes_a_file_lycoris_loads_with_kiln_output(tmp_path, capsys):
    from safetensors.torch import save_file
    from cli.main import main
    from kiln.core.lora.io import load_lora_file, save_lora
    unet = tiny_unet()
    net, _ = trained_dora(unet)
    xs = inputs()
    with net:
        kiln_out = run(unet, xs)
    save_lora(KilnLora(net.export(), {"ss_network_module": "lycoris.kohya"}), tmp_path / "kiln_dora.safetensors")
    # The base as a checkpoint stores it: LDM key names under model.diffusion_model.
    save_file({f"model.diffusion_model.{HOST_NAMES[p]}.weight": m.weight.contiguous() for p, m in
               ((p, unet.get_submodule(p)) for p in PATHS)}, str(tmp_path / "base.safetensors"))
    args = [str(tmp_path / "kiln_dora.safetensors"), str(tmp_path / "lyco.safetensors"), "--dora-convention", "lycoris"]
    assert main(["convert", *args, "--base", str(tmp_path / "base.safetensors")]) == 0
    assert "4 DoRA modules converted to the lycoris convention" in capsys.readouterr().out
    converted = load_lora_file(tmp_path / "lyco.safetensors")
    assert converted.metadata["kiln_dora_convention"] == "lycoris"
    target = tiny_unet()
    network, _ = lycoris_kohya.create_network_from_weights(1.0, str(tmp_path / "lyco.safetensors"), None, None, target)
    network.apply_to(None, target, apply_text_encoder=False, apply_unet=True)
    network.load_state_dict(dict(converted.tensors), strict=False)
    with torch.no_grad():
        lyco_out = run(target, xs)
    for p in PATHS:
        torch.testing.assert_close(lyco_out[p], kiln_out[p], rtol=1e-4, atol=1e-5, msg=p)
    # A base that lacks the layers: exit status 2 and a message naming a module and the fix.
    save_file({"other.weight": torch.zeros(2, 2)}, str(tmp_path / "wrong.safetensors"))
    assert main(["convert", *args, "--base", str(tmp_path / "wrong.safetensors")]) == 2
    assert "give the base model" in capsys.readouterr().err
