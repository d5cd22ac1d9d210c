"""Family tables without the host: targets per preset, the generic fallback's warning, block names,
timestep sampling per scheme."""
import logging

import pytest
import torch

from kiln.core.net.families import family_block, wanted_in_family
from kiln.core.net.targets import wanted
from kiln.core.net.blocks import block_of_kohya
from kiln.core.train.objective import ObjectiveSpec, sample_percents

FLUX = ["double_blocks.0.img_attn.qkv", "double_blocks.0.txt_attn.proj", "double_blocks.0.img_mlp.0",
        "double_blocks.0.img_mod.lin", "single_blocks.3.linear1", "single_blocks.3.modulation.lin", "img_in",
        "final_layer.linear", "time_in.in_layer"]


def _selected(names, preset, family):
    return [n for n in names if wanted_in_family(n, True, preset, family)]


def test_flux_presets_grow_attn_to_blocks_to_full():
    assert _selected(FLUX, "attn", "flux1-dev") == ["double_blocks.0.img_attn.qkv", "double_blocks.0.txt_attn.proj",
                                                    "single_blocks.3.linear1"]
    assert _selected(FLUX, "attn_mlp", "flux1-dev") == FLUX[:6]
    assert _selected(FLUX, "full", "flux1-dev") == FLUX


def test_families_select_their_own_blocks_only():
    assert wanted_in_family("joint_blocks.1.x_block.attn2.qkv", True, "attn", "sd3")
    assert wanted_in_family("joint_blocks.1.context_block.adaLN_modulation.1", True, "attn_mlp", "sd3")
    assert not wanted_in_family("joint_blocks.1.context_block.adaLN_modulation.1", True, "attn", "sd3")
    assert wanted_in_family("transformer_blocks.0.attn.add_k_proj", True, "attn", "qwen-image")
    assert wanted_in_family("transformer_blocks.0.img_mlp.net.2", True, "attn_mlp", "qwen-image")
    assert not wanted_in_family("img_in", True, "attn_mlp", "qwen-image")
    assert wanted_in_family("blocks.0.cross_attn.k", True, "attn", "wan")
    assert wanted_in_family("noise_refiner.0.feed_forward.w2", True, "attn_mlp", "z-image")
    assert not wanted_in_family("double_blocks.0.img_attn.qkv", False, "full", "flux1-dev"), "convs never train here"
    # The family is used only for the diffusion model; text encoders keep CLIP naming.
    assert wanted("diffusion_model.double_blocks.0.img_attn.qkv", torch.nn.Linear(2, 2), "attn", "flux1-dev")
    assert not wanted("diffusion_model.double_blocks.0.img_attn.qkv", torch.nn.Linear(2, 2), "attn", "")


def test_unknown_family_trains_every_block_linear_and_warns(caplog):
    with caplog.at_level(logging.WARNING, logger="kiln"):
        picked = _selected(["blocks.0.attn.to_q", "blocks.0.ff.net.0", "patch_embed.proj"], "attn_mlp", "mystery-dit")
    assert picked == ["blocks.0.attn.to_q", "blocks.0.ff.net.0"]
    assert any("mystery-dit" in r.getMessage() for r in caplog.records)
    assert _selected(["blocks.0.attn.to_q", "blocks.0.ff.net.0"], "attn", "mystery-dit") == ["blocks.0.attn.to_q"]


def test_block_names_agree_between_training_and_tools():
    for family, host_name, kohya in [("flux1-dev", "single_blocks.12.linear1", "lora_unet_single_blocks_12_linear1"),
                                     ("sd3", "joint_blocks.3.x_block.attn.qkv", "lora_unet_joint_blocks_3_x_block_attn_qkv"),
                                     ("qwen-image", "transformer_blocks.7.attn.to_q", "lora_unet_transformer_blocks_7_attn_to_q"),
                                     ("wan", "blocks.2.ffn.0", "lora_unet_blocks_2_ffn_0"),
                                     ("z-image", "layers.5.attention.qkv", "lora_unet_layers_5_attention_qkv")]:
        assert family_block(host_name, family) == block_of_kohya(kohya), family
    assert block_of_kohya("transformer.single_blocks.3.proj_out") == "SINGLE03"   # diffusers/ai-toolkit keys


def test_timestep_sampling_schemes():
    gen = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    uniform = torch.tensor(sample_percents(ObjectiveSpec(), 4000, gen()))
    logit = torch.tensor(sample_percents(ObjectiveSpec(timestep_sampling="logit_normal"), 4000, gen()))
    auto_logit = sample_percents(ObjectiveSpec(), 4000, gen(), family_default="logit_normal")
    assert abs(float(uniform.std()) - (1 / 12) ** 0.5) < 0.02
    assert abs(float(logit.mean()) - 0.5) < 0.02 and float(logit.std()) < 0.25, "logit-normal piles up mid-schedule"
    assert auto_logit == logit.tolist(), "auto means the family's default"
    noisier = torch.tensor(sample_percents(ObjectiveSpec(timestep_sampling="sigmoid", logit_mean=1.0), 4000, gen()))
    assert float(noisier.mean()) < 0.35, "a positive mean trains noisier (low schedule fractions)"
    ranged = sample_percents(ObjectiveSpec(timestep_sampling="logit_normal", min_timestep=0.2, max_timestep=0.4), 500, gen())
    assert min(ranged) >= 0.2 and max(ranged) <= 0.4
    with pytest.raises(ValueError, match="timestep sampling"):
        sample_percents(ObjectiveSpec(timestep_sampling="cosmic"), 1, gen())


def test_transformer_prefixed_loras_read_as_kohya_names():
    """ai-toolkit/diffusers ``transformer.`` keys (Qwen-Image: the host's names) -> musubi/kohya names."""
    from kiln.core.lora.formats import to_kohya
    from kiln.core.lora.value import KilnLora
    down, up = torch.randn(4, 64), torch.randn(64, 4)
    out = to_kohya(KilnLora({"transformer.transformer_blocks.0.attn.to_q.lora_A.weight": down,
                             "transformer.transformer_blocks.0.attn.to_q.lora_B.weight": up}, {}))
    name = "lora_unet_transformer_blocks_0_attn_to_q"
    assert torch.equal(out.tensors[f"{name}.lora_down.weight"], down)
    assert torch.equal(out.tensors[f"{name}.lora_up.weight"], up)
    assert float(out.tensors[f"{name}.alpha"]) == 4.0, "PEFT files: alpha = rank (scale 1)"


def test_family_block_weights_reach_the_network():
    """A block weight named as inspect names the block (SINGLE00) drops or scales that block's layers."""
    from kiln.core.net.blocks import block_of
    from kiln.core.net.network import Network, TargetLayer
    from kiln.core.net.spec import NetworkSpec
    layers = []
    for host_name in ("diffusion_model.double_blocks.0.img_attn.qkv", "diffusion_model.single_blocks.0.linear1"):
        kohya = "lora_unet_" + host_name[len("diffusion_model."):].replace(".", "_")
        layers.append(TargetLayer(kohya, host_name, torch.nn.Linear(8, 8), False,
                                  block_of(host_name, False, "flux1-dev"), "flux1-dev"))
    assert [layer.block for layer in layers] == ["DOUBLE00", "SINGLE00"]
    net = Network(NetworkSpec(rank=2, alpha=2.0, block_rank_weights=(("SINGLE00", 0.0),)), layers)
    assert list(net.adapters) == ["lora_unet_double_blocks_0_img_attn_qkv"]
