"""LoRA tools on the less common forms (Tucker LoCon/LoHa/LoKr), block names, base-model checks and the CLI."""
import argparse
import json

import pytest
import torch

from kiln.core.lora.formats import to_kohya
from kiln.core.lora.io import load_lora_file, save_lora
from kiln.core.lora.value import KilnLora
from kiln.core.net.blocks import block_of_kohya
from kiln.core.lora.algorithms import module_delta
from kiln.core.tools.merge import check_against_model, merge_loras
from kiln.core.tools.resize import ResizeSpec, resize_lora


def g(seed):
    return torch.Generator().manual_seed(seed)


def delta2d(lora, module):
    d = module_delta(to_kohya(lora).modules[module], module)
    return d.reshape(d.shape[0], -1)


def test_tucker_locon_resizes_exactly_to_its_rank():
    r = g(0)
    down, mid, up = torch.randn(4, 6, 1, 1, generator=r), torch.randn(4, 4, 3, 3, generator=r), torch.randn(10, 4, 1, 1, generator=r)
    m = "lora_unet_input_blocks_1_0_in_layers_2"
    lora = KilnLora({f"{m}.lora_down.weight": down, f"{m}.lora_mid.weight": mid, f"{m}.lora_up.weight": up,
                     f"{m}.alpha": torch.tensor(2.0)})
    # the host's reading of a Tucker LoCon (comfy weight_adapter/lora.py), written out independently
    d2 = torch.mm(down.transpose(0, 1).flatten(1), mid.transpose(0, 1).flatten(1)).reshape(6, 4, 3, 3).transpose(0, 1)
    want = (up.flatten(1) @ d2.flatten(1)) * 0.5
    out, rep = resize_lora(lora, ResizeSpec("fixed", 4))
    assert out.tensors[f"{m}.lora_down.weight"].shape == (4, 6, 3, 3) and rep[0].algorithm == "locon"
    torch.testing.assert_close(delta2d(out, m), want, rtol=1e-4, atol=1e-4)


def test_tucker_loha_and_factored_lokr_deltas():
    r = g(1)
    m = "lora_unet_x"
    t1, t2 = torch.randn(3, 3, 3, 3, generator=r), torch.randn(3, 3, 3, 3, generator=r)
    # LyCORIS Tucker LoHa: w*_a is (rank, out) and w*_b is (rank, in)
    a1, b1, a2, b2 = (torch.randn(3, 8, generator=r), torch.randn(3, 5, generator=r),
                      torch.randn(3, 8, generator=r), torch.randn(3, 5, generator=r))
    loha = {"hada_t1": t1, "hada_w1_a": a1, "hada_w1_b": b1, "hada_t2": t2, "hada_w2_a": a2, "hada_w2_b": b2,
            "alpha": torch.tensor(1.5)}
    m1 = torch.stack([torch.stack([a1.T @ t1[:, :, i, j] @ b1 for j in range(3)], -1) for i in range(3)], -2)
    m2 = torch.stack([torch.stack([a2.T @ t2[:, :, i, j] @ b2 for j in range(3)], -1) for i in range(3)], -2)
    torch.testing.assert_close(module_delta(loha, m), m1 * m2 * 0.5, rtol=1e-4, atol=1e-4)
    w1, w2a, w2b = torch.randn(2, 2, generator=r), torch.randn(4, 2, generator=r), torch.randn(2, 3, generator=r)
    lokr = {"lokr_w1": w1, "lokr_w2_a": w2a, "lokr_w2_b": w2b, "alpha": torch.tensor(1.0)}
    torch.testing.assert_close(module_delta(lokr, m), torch.kron(w1, w2a @ w2b) * 0.5)   # scale alpha / rank(w2)


def test_dynamic_resize_of_a_dense_layer_uses_its_whole_energy():
    r = g(2)
    m = "lora_unet_middle_block_1_proj_in"
    lora = KilnLora({f"{m}.hada_w1_a": torch.randn(64, 6, generator=r), f"{m}.hada_w1_b": torch.randn(6, 48, generator=r),
                     f"{m}.hada_w2_a": torch.randn(64, 6, generator=r), f"{m}.hada_w2_b": torch.randn(6, 48, generator=r),
                     f"{m}.alpha": torch.tensor(6.0)},
                    {"ss_network_module": "lycoris.kohya", "ss_network_args": json.dumps({"algo": "loha"})})
    s = torch.linalg.svdvals(delta2d(lora, m).double())
    frac = torch.cumsum(s ** 2, 0) / (s ** 2).sum()
    out, rep = resize_lora(lora, ResizeSpec("sv_fro", 0.95, max_rank=40))
    want = int((frac < 0.95).sum()) + 1
    assert rep[0].new_rank == want and rep[0].kept_energy == pytest.approx(float(frac[want - 1]), rel=1e-3)
    assert rep[0].kept_energy >= 0.95 and float(frac[want - 2]) < 0.95
    assert out.metadata["ss_network_module"] == "networks.lora" and "algo" not in json.loads(out.metadata["ss_network_args"])
    assert out.metadata["ss_network_dim"] == str(want)


def test_block_names_follow_the_ldm_numbering_in_both_spellings():
    assert block_of_kohya("lora_unet_down_blocks_1_attentions_0_proj_in") == "IN04"
    assert block_of_kohya("lora_unet_input_blocks_4_1_proj_in") == "IN04"
    assert block_of_kohya("lora_unet_down_blocks_0_downsamplers_0_conv") == "IN03"
    assert block_of_kohya("lora_unet_up_blocks_1_attentions_2_proj_out") == "OUT05"
    assert block_of_kohya("lora_unet_up_blocks_0_upsamplers_0_conv") == "OUT02"
    assert block_of_kohya("lora_unet_mid_block_attentions_0_proj_in") == "MID"
    assert block_of_kohya("lora_te2_text_model_encoder_layers_0_mlp_fc1") == "TE2"


def _lora(seed, modules, meta=None):
    r = g(seed)
    t = {}
    for m in modules:
        t.update({f"{m}.lora_down.weight": torch.randn(3, 16, generator=r), f"{m}.lora_up.weight": torch.randn(8, 3, generator=r),
                  f"{m}.alpha": torch.tensor(1.0)})
    return KilnLora(t, meta or {})


def test_block_weighted_merge_and_base_model_mismatch():
    mods = ["lora_unet_down_blocks_1_attentions_0_proj_in", "lora_unet_up_blocks_1_attentions_0_proj_in",
            "lora_te_text_model_encoder_layers_0_mlp_fc1"]
    a, b = _lora(3, mods), _lora(4, mods)
    merged = merge_loras([(a, 1.0), (b, 0.5)], block_weights=(("TE", 0.0), ("OUT03", 2.0)))
    for m, f in zip(mods, (1.0, 2.0, 0.0)):
        want = f * (delta2d(a, m) + 0.5 * delta2d(b, m))
        assert float((delta2d(merged, m) - want).norm()) <= 1e-5 * max(1.0, float(want.norm()))
    with pytest.raises(ValueError, match=r"x\.safetensors: sdxl.*y\.safetensors: sd_v1"):
        merge_loras([(_lora(3, mods, {"ss_base_model_version": "sdxl_base_v1-0"}), 1.0),
                     (_lora(4, mods, {"ss_base_model_version": "sd_v1"}), 1.0)], names=["x.safetensors", "y.safetensors"])


def test_fit_check_names_the_module():
    mods = ["lora_unet_down_blocks_1_attentions_0_proj_in", "lora_te_text_model_encoder_layers_0_mlp_fc1"]
    lora = _lora(5, mods)
    assert check_against_model(lora, {mods[0]: (8, 16)}) == [mods[1]]         # TE skipped without a CLIP
    with pytest.raises(ValueError, match="down_blocks_1_attentions_0_proj_in.*different base model"):
        check_against_model(lora, {mods[0]: (8, 32), mods[1]: (8, 16)})
    with pytest.raises(ValueError, match="no layer"):
        check_against_model(lora, {mods[1]: (8, 16)})


def test_sdxl_diffusers_text_encoders_get_te1_and_te2():
    r = g(6)
    d, u = torch.randn(2, 8, generator=r), torch.randn(8, 2, generator=r)
    peft = KilnLora({"text_encoder.text_model.encoder.layers.0.mlp.fc1.lora_A.weight": d,
                     "text_encoder.text_model.encoder.layers.0.mlp.fc1.lora_B.weight": u,
                     "text_encoder_2.text_model.encoder.layers.0.mlp.fc1.lora_A.weight": d,
                     "text_encoder_2.text_model.encoder.layers.0.mlp.fc1.lora_B.weight": u})
    assert set(to_kohya(peft).modules) == {"lora_te1_text_model_encoder_layers_0_mlp_fc1",
                                           "lora_te2_text_model_encoder_layers_0_mlp_fc1"}


def test_cli_resize_merge_inspect(tmp_path, capsys):
    from kiln.cli.tools import register
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    mods = ["lora_unet_down_blocks_1_attentions_0_proj_in", "lora_unet_mid_block_attentions_0_proj_in"]
    save_lora(_lora(7, mods, {"ss_base_model_version": "sd_v1"}), tmp_path / "a.safetensors")
    save_lora(_lora(8, mods), tmp_path / "b.safetensors")
    run = lambda *argv: (lambda a: a.func(a))(parser.parse_args([str(x) for x in argv]))
    assert run("merge", tmp_path / "a.safetensors", tmp_path / "b.safetensors", "--weights", 1, -1,
               "-o", tmp_path / "m.safetensors") == 0
    a, b, m = (load_lora_file(tmp_path / f"{n}.safetensors") for n in "abm")
    for mod in mods:
        want = delta2d(a, mod) - delta2d(b, mod)
        assert float((delta2d(m, mod) - want).norm() / want.norm()) < 1e-5
    assert run("resize", tmp_path / "m.safetensors", tmp_path / "r.safetensors", "--value", 2) == 0
    r = load_lora_file(tmp_path / "r.safetensors")
    assert r.metadata["ss_network_dim"] == "2" and r.metadata["ss_base_model_version"] == "sd_v1"
    assert run("inspect", tmp_path / "r.safetensors", "--plot", tmp_path / "p.png") == 0
    out = capsys.readouterr().out
    assert "2 modules" in out and "IN04" in out and (tmp_path / "p.png").stat().st_size > 0
