"""LoRA tools without the host: exact resize, exact merge, extraction, formats, inspect/compare."""
import pytest
import torch

from kiln.core.lora.formats import LoraFormatError, detect_format, to_kohya
from kiln.core.lora.value import KilnLora
from kiln.core.tools.extract import ExtractSpec, extract_lora
from kiln.core.tools.lora_info import compare_loras, inspect_text, module_infos
from kiln.core.lora.algorithms import Factored, module_delta
from kiln.core.tools.lowrank import factored_svd, randomized_svd
from kiln.core.tools.merge import merge_loras
from kiln.core.tools.resize import ResizeSpec, resize_lora


def rand_lora(seed, rank=8, conv=True, alpha=4.0):
    g = torch.Generator().manual_seed(seed)
    t = {"lora_unet_mid_block_attentions_0_proj_in.lora_down.weight": torch.randn(rank, 40, generator=g),
         "lora_unet_mid_block_attentions_0_proj_in.lora_up.weight": torch.randn(32, rank, generator=g),
         "lora_unet_mid_block_attentions_0_proj_in.alpha": torch.tensor(alpha)}
    if conv:
        t.update({"lora_unet_down_blocks_0_resnets_0_conv1.lora_down.weight": torch.randn(rank, 6, 3, 3, generator=g),
                  "lora_unet_down_blocks_0_resnets_0_conv1.lora_up.weight": torch.randn(12, rank, 1, 1, generator=g),
                  "lora_unet_down_blocks_0_resnets_0_conv1.alpha": torch.tensor(alpha)})
    return KilnLora(t, {"ss_network_dim": str(rank)})


def deltas(lora):
    return {m: module_delta(p, m).reshape(module_delta(p, m).shape[0], -1) for m, p in to_kohya(lora).modules.items()}


def test_factored_svd_equals_full_svd():
    g = torch.Generator().manual_seed(0)
    f = Factored(torch.randn(300, 16, generator=g), torch.randn(16, 200, generator=g), (300, 200))
    u, s, vh = factored_svd(f)
    full = torch.linalg.svdvals((f.up @ f.down).double())[:16].float()
    torch.testing.assert_close(s, full, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close((u * s) @ vh, f.up @ f.down, rtol=1e-4, atol=1e-3)


def test_resize_to_full_rank_reproduces_the_delta_and_shapes():
    lora = rand_lora(1)
    out, report = resize_lora(lora, ResizeSpec("fixed", 8))
    for m, d in deltas(lora).items():
        torch.testing.assert_close(deltas(out)[m], d, rtol=1e-4, atol=1e-4)
    assert out.tensors["lora_unet_down_blocks_0_resnets_0_conv1.lora_down.weight"].shape == (8, 6, 3, 3)
    assert out.tensors["lora_unet_down_blocks_0_resnets_0_conv1.lora_up.weight"].shape == (12, 8, 1, 1)
    assert all(abs(r.kept_energy - 1) < 1e-6 for r in report)


def test_resize_lower_rank_is_the_best_approximation_and_dynamic_methods():
    lora = rand_lora(2, conv=False)
    out, report = resize_lora(lora, ResizeSpec("fixed", 3))
    m = "lora_unet_mid_block_attentions_0_proj_in"
    d = deltas(lora)[m].double()
    u, s, vh = torch.linalg.svd(d)
    best = (u[:, :3] * s[:3]) @ vh[:3]
    torch.testing.assert_close(deltas(out)[m].double(), best, rtol=1e-3, atol=1e-3)
    assert out.metadata["ss_network_dim"] == "3"
    fro, rep = resize_lora(lora, ResizeSpec("sv_fro", 0.9))
    e = torch.cumsum(s ** 2, 0) / (s ** 2).sum()
    assert rep[0].new_rank == int((e < 0.9).sum()) + 1 and rep[0].kept_energy >= 0.9
    ratio, rep = resize_lora(lora, ResizeSpec("sv_ratio", 2.0))
    assert rep[0].new_rank == int((s >= s[0] / 2).sum())


def test_merge_equals_the_weighted_sum_of_deltas():
    a, b = rand_lora(3), rand_lora(4, rank=5, alpha=1.0)
    merged = merge_loras([(a, 0.7), (b, -0.4)])
    da, db, dm = deltas(a), deltas(b), deltas(merged)
    for m in da:
        want = 0.7 * da[m] + -0.4 * db[m]
        assert float((dm[m] - want).norm() / want.norm()) < 1e-5
    # compressed to a rank through the exact factored SVD: the best rank-4 approximation of the sum
    small = merge_loras([(a, 0.7), (b, -0.4)], rank=4)
    m = "lora_unet_mid_block_attentions_0_proj_in"
    want = (0.7 * da[m] - 0.4 * db[m]).double()
    s = torch.linalg.svdvals(want)
    err = float((deltas(small)[m].double() - want).norm())
    assert err == pytest.approx(float(torch.sqrt((s[4:] ** 2).sum())), rel=1e-3)
    # block weights
    blocked = merge_loras([(a, 1.0)], block_weights={"lora_unet_down_blocks_0_*": 0.0})
    assert float(deltas(blocked)["lora_unet_down_blocks_0_resnets_0_conv1"].abs().max()) == 0.0


def test_merge_rejects_mismatched_shapes():
    a = rand_lora(5)
    b = KilnLora({k: (v[:, :20] if k.endswith("proj_in.lora_down.weight") else v) for k, v in rand_lora(6).tensors.items()})
    with pytest.raises(ValueError, match="proj_in"):
        merge_loras([(a, 1.0), (b, 1.0)])


def test_extract_recovers_a_known_low_rank_delta():
    g = torch.Generator().manual_seed(7)
    base = {"model.diffusion_model.middle_block.1.proj_in.weight": torch.randn(64, 48, generator=g),
            "model.diffusion_model.input_blocks.1.0.in_layers.2.weight": torch.randn(32, 16, 3, 3, generator=g)}
    low = torch.randn(64, 4, generator=g) @ torch.randn(4, 48, generator=g)
    conv_low = (torch.randn(32, 2, generator=g) @ torch.randn(2, 16 * 9, generator=g)).reshape(32, 16, 3, 3)
    tuned = {"model.diffusion_model.middle_block.1.proj_in.weight": base["model.diffusion_model.middle_block.1.proj_in.weight"] + low,
             "model.diffusion_model.input_blocks.1.0.in_layers.2.weight": base["model.diffusion_model.input_blocks.1.0.in_layers.2.weight"] + conv_low}
    from kiln.core.tools.extract import checkpoint_names
    lora, report = extract_lora(tuned, base, checkpoint_names(base), ExtractSpec("fixed", 4, conv_rank=2, clamp_quantile=1.0))
    d = deltas(lora)
    torch.testing.assert_close(d["lora_unet_mid_block_attentions_0_proj_in"], low, rtol=1e-3, atol=1e-3)
    torch.testing.assert_close(d["lora_unet_down_blocks_0_resnets_0_conv1"].reshape(32, 16, 3, 3), conv_low, rtol=1e-3, atol=1e-3)
    dyn, rep = extract_lora(tuned, base, checkpoint_names(base), ExtractSpec("sv_fro", 0.999, conv_rank=8, clamp_quantile=1.0))
    assert {r.module: r.new_rank for r in rep} == {"lora_unet_mid_block_attentions_0_proj_in": 4, "lora_unet_down_blocks_0_resnets_0_conv1": 2}


def test_randomized_svd_matches_top_singular_values():
    g = torch.Generator().manual_seed(1)
    m = torch.randn(200, 8, generator=g) @ torch.randn(8, 150, generator=g) + 0.01 * torch.randn(200, 150, generator=g)
    _, s, _ = randomized_svd(m, 8, generator=g)
    torch.testing.assert_close(s, torch.linalg.svdvals(m)[:8], rtol=1e-3, atol=1e-3)


def test_reads_comfyui_native_diffusers_and_lycoris_layouts():
    g = torch.Generator().manual_seed(2)
    down, up = torch.randn(4, 40, generator=g), torch.randn(32, 4, generator=g)
    comfy = KilnLora({"diffusion_model.middle_block.1.proj_in.lora_down.weight": down,
                      "diffusion_model.middle_block.1.proj_in.lora_up.weight": up,
                      "diffusion_model.middle_block.1.proj_in.alpha": torch.tensor(4.0),
                      "diffusion_model.out.0.diff": torch.ones(8), "diffusion_model.out.0.diff_b": torch.ones(8)})
    assert detect_format(comfy.tensors) == "comfyui"
    k = to_kohya(comfy)
    assert "lora_unet_middle_block_1_proj_in.lora_up.weight" in k.tensors and "lora_unet_out_0.diff_b" in k.tensors
    peft = KilnLora({"unet.mid_block.attentions.0.proj_in.lora_A.weight": down,
                     "unet.mid_block.attentions.0.proj_in.lora_B.weight": up,
                     "text_encoder.text_model.encoder.layers.0.self_attn.q_proj.lora_A.weight": down,
                     "text_encoder.text_model.encoder.layers.0.self_attn.q_proj.lora_B.weight": up})
    assert detect_format(peft.tensors) == "diffusers"
    kp = to_kohya(peft)
    assert float(kp.tensors["lora_unet_mid_block_attentions_0_proj_in.alpha"]) == 4.0   # alpha = rank: scale 1
    assert "lora_te_text_model_encoder_layers_0_self_attn_q_proj.lora_down.weight" in kp.tensors
    loha = KilnLora({"lora_unet_x.hada_w1_a": up, "lora_unet_x.hada_w1_b": down, "lora_unet_x.hada_w2_a": up,
                     "lora_unet_x.hada_w2_b": down, "lora_unet_x.alpha": torch.tensor(2.0)})
    assert detect_format(loha.tensors) == "lycoris" and module_infos(loha)[0].algorithm == "loha"
    resized, rep = resize_lora(loha, ResizeSpec("fixed", 16))
    m1, m2 = up @ down, up @ down
    torch.testing.assert_close(deltas(resized)["lora_unet_x"], m1 * m2 * 0.5, rtol=1e-3, atol=1e-2)
    with pytest.raises(LoraFormatError, match="weird"):
        to_kohya(KilnLora({"weird.key": down}))


def test_inspect_and_compare():
    a = rand_lora(8)
    text = inspect_text(a.with_metadata(ss_base_model_version="sd_v1"), "a")
    assert "2 modules" in text and "sd_v1" in text and "MID" in text and "IN01" in text
    same = compare_loras(a, a)
    assert all(abs(r.cosine - 1) < 1e-5 and abs(r.norm_ratio - 1) < 1e-5 for r in same)
    neg = merge_loras([(a, -2.0)])
    rows = compare_loras(a, neg)
    assert all(abs(r.cosine + 1) < 1e-4 and abs(r.norm_ratio - 2) < 1e-4 for r in rows)
