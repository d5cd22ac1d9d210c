"""diffusers / ai-toolkit ``transformer.`` LoRAs for Flux, Wan and Z-Image, read into the host's layout
(fused q/k/v and Flux's fused single-block linear1), checked by their weight deltas in core and through
the host's LoraLoader and key maps."""
import logging

import pytest
import torch

from conftest import REPO


def _pair(out_f, in_f, rank, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(rank, in_f, generator=g), torch.randn(out_f, rank, generator=g)


def _delta(lora_tensors, name):
    down, up = lora_tensors[f"{name}.lora_down.weight"], lora_tensors[f"{name}.lora_up.weight"]
    return (up.float() @ down.float()) * float(lora_tensors[f"{name}.alpha"]) / down.shape[0]


def test_flux_split_qkv_and_single_linear1_become_fused_deltas():
    from kiln.core.lora.formats import to_kohya
    from kiln.core.lora.value import KilnLora
    h, tensors, parts = 8, {}, {}
    # double block: q and v with different ranks and alphas, no k (its rows stay zero); single block: all four
    for i, (path, out_f, rank, alpha) in enumerate([
            ("transformer_blocks.0.attn.to_q", h, 2, 1.0), ("transformer_blocks.0.attn.to_v", h, 3, 6.0),
            ("single_transformer_blocks.0.attn.to_q", h, 2, None), ("single_transformer_blocks.0.attn.to_k", h, 2, None),
            ("single_transformer_blocks.0.attn.to_v", h, 2, None), ("single_transformer_blocks.0.proj_mlp", 4 * h, 2, None)]):
        down, up = _pair(out_f, h, rank, i)
        tensors[f"transformer.{path}.lora_A.weight"], tensors[f"transformer.{path}.lora_B.weight"] = down, up
        if alpha is not None:
            tensors[f"transformer.{path}.alpha"] = torch.tensor(alpha)
        parts[path] = up @ down * ((alpha / rank) if alpha is not None else 1.0)
    out = to_kohya(KilnLora(tensors, {})).tensors
    qkv = _delta(out, "lora_unet_double_blocks_0_img_attn_qkv")
    assert qkv.shape == (3 * h, h)
    torch.testing.assert_close(qkv[:h], parts["transformer_blocks.0.attn.to_q"])
    assert qkv[h:2 * h].abs().max() == 0
    torch.testing.assert_close(qkv[2 * h:], parts["transformer_blocks.0.attn.to_v"])
    linear1 = _delta(out, "lora_unet_single_blocks_0_linear1")
    expected = torch.cat([parts[f"single_transformer_blocks.0.{p}"] for p in
                          ("attn.to_q", "attn.to_k", "attn.to_v", "proj_mlp")])
    torch.testing.assert_close(linear1, expected)


def test_wan_and_z_image_names():
    from kiln.core.lora.formats import to_kohya
    from kiln.core.lora.value import KilnLora
    down, up = _pair(4, 4, 2, 0)
    wan = to_kohya(KilnLora({"transformer.blocks.3.attn2.to_out.0.lora_A.weight": down,
                             "transformer.blocks.3.attn2.to_out.0.lora_B.weight": up,
                             "transformer.blocks.3.ffn.net.0.proj.lora_A.weight": down,
                             "transformer.blocks.3.ffn.net.0.proj.lora_B.weight": up}, {})).tensors
    assert {k.split(".")[0] for k in wan} == {"lora_unet_blocks_3_cross_attn_o", "lora_unet_blocks_3_ffn_0"}
    z = to_kohya(KilnLora({"transformer.noise_refiner.1.attention.to_k.lora_A.weight": down,
                           "transformer.noise_refiner.1.attention.to_k.lora_B.weight": up,
                           "transformer.layers.0.feed_forward.w2.lora_A.weight": down,
                           "transformer.layers.0.feed_forward.w2.lora_B.weight": up}, {})).tensors
    assert {k.split(".")[0] for k in z} == {"lora_unet_noise_refiner_1_attention_qkv",
                                             "lora_unet_layers_0_feed_forward_w2"}
    torch.testing.assert_close(_delta(z, "lora_unet_noise_refiner_1_attention_qkv")[4:8], up @ down)


def test_double_block_attention_alone_keeps_the_hosts_qwen_names():
    """Qwen-Image's host names are the diffusers names; only Flux evidence (single blocks, metadata)
    makes double-block keys Flux's."""
    from kiln.core.lora.formats import to_kohya
    from kiln.core.lora.value import KilnLora
    down, up = _pair(4, 4, 2, 0)
    keys = {"transformer.transformer_blocks.0.attn.to_q.lora_A.weight": down,
            "transformer.transformer_blocks.0.attn.to_q.lora_B.weight": up}
    assert "lora_unet_transformer_blocks_0_attn_to_q.lora_down.weight" in to_kohya(KilnLora(keys, {})).tensors
    flux = to_kohya(KilnLora(keys, {"modelspec.architecture": "flux-1-dev/lora"})).tensors
    assert "lora_unet_double_blocks_0_img_attn_qkv.lora_down.weight" in flux
    # SD3's diffusers blocks have Flux's double-block names (ff_context, norm1_context): not rewritten.
    sd3 = {"transformer.transformer_blocks.0.ff_context.net.2.lora_A.weight": down,
           "transformer.transformer_blocks.0.ff_context.net.2.lora_B.weight": up}
    assert "lora_unet_transformer_blocks_0_ff_context_net_2.lora_down.weight" in to_kohya(KilnLora(sd3, {})).tensors


def _diffusers_lora(model, layout, rank=2, seed=0):
    """A diffusers-named LoRA on every module of ``layout``'s table that the tiny model has (block 0 of
    each stack), each part sized from the host weight it lands in."""
    import re
    from kiln.core.lora.transformer_layouts import LAYOUTS
    sd = model.model.diffusion_model.state_dict()
    tensors, g = {}, torch.Generator().manual_seed(seed)
    for rx, host, part, widths in LAYOUTS[layout]:
        stacks = ("layers", "noise_refiner", "context_refiner") if rx.startswith("(layers") else (None,)
        for stack in stacks:
            path = rx.replace("(layers|noise_refiner|context_refiner)", stack or "").replace(r"(\d+)", "0")
            path = path.replace("\\.", ".")
            m = re.fullmatch(rx, path)
            assert m, (rx, path)
            target = host.format(*m.groups()) + ".weight"
            if target not in sd:
                continue
            out_f, in_f = sd[target].shape
            if part is not None:
                out_f = out_f // sum(widths) * widths[part]
            tensors[f"transformer.{path}.lora_A.weight"] = torch.randn(rank, in_f, generator=g) * 0.1
            tensors[f"transformer.{path}.lora_B.weight"] = torch.randn(out_f, rank, generator=g) * 0.1
            tensors[f"transformer.{path}.alpha"] = torch.tensor(1.0)
    return tensors


def _patched(mp):
    import comfy.lora
    sd = mp.model.state_dict()
    return {k: comfy.lora.calculate_weight(p, sd[k].float().clone(), k) for k, p in mp.patches.items()}


@pytest.mark.parametrize("family,layout", [("flux1-dev", "flux"), ("wan", "wan"), ("z-image", "z-image")])
def test_kiln_reads_diffusers_transformer_loras_as_the_host_applies_them(family, layout, host, caplog):
    """Kiln Load LoRA's reading, applied by the host, patches every layer the file names, with the file's
    deltas (fused layers: each part in its rows); where the host's LoraLoader reads the file itself
    (Flux, Z-Image), both give the same weights."""
    import nodes
    from safetensors.torch import save_file
    from kiln.core.lora.formats import to_kohya
    from kiln.core.lora.value import KilnLora
    from kiln.host import family_fixtures as ff
    from kiln.host.training import apply_lora
    if ff.available(family):
        pytest.skip(ff.available(family))
    model = ff.config_built_model(family)
    tensors = _diffusers_lora(model, layout)
    modules = {k.rsplit(".", 2)[0] for k in tensors if k.endswith("lora_A.weight")}
    assert len(modules) >= 4, modules
    kiln = to_kohya(KilnLora(tensors, {}))
    with caplog.at_level(logging.WARNING), torch.inference_mode():
        via_kiln, _ = apply_lora(model, None, kiln, 1.0, 0.0)
    assert not [r for r in caplog.records if "lora key not loaded" in r.getMessage()], caplog.text
    assert len(via_kiln.patches) == len({k.split(".")[0] for k in kiln.tensors})
    kiln_weights = _patched(via_kiln)
    base = model.model.state_dict()
    for name in {k.split(".")[0] for k in kiln.tensors}:
        key = next(k for k in kiln_weights if "lora_unet_" + k[len("diffusion_model."):-len(".weight")].replace(".", "_") == name)
        torch.testing.assert_close(kiln_weights[key] - base[key].float(), _delta(kiln.tensors, name), atol=1e-5, rtol=1e-4)
    path = host.loras_dir() / f"kiln_diffusers_{layout}.safetensors"
    save_file(tensors, str(path))
    caplog.clear()
    with caplog.at_level(logging.WARNING), torch.inference_mode():
        via_file, _ = nodes.LoraLoader().load_lora(model, None, path.name, 1.0, 0.0)
    import comfy.utils
    # The host's LoraLoader maps diffusers Flux names, and Z-Image's where it has z_image_to_diffusers; it
    # has no diffusers map for Wan (there Kiln's reading is the only one).
    host_reads = {"flux": True, "z-image": hasattr(comfy.utils, "z_image_to_diffusers"), "wan": False}[layout]
    if not host_reads:
        return
    assert not [r for r in caplog.records if "lora key not loaded" in r.getMessage()], caplog.text
    file_weights = _patched(via_file)
    assert set(file_weights) == set(kiln_weights)
    for key in kiln_weights:
        torch.testing.assert_close(kiln_weights[key], file_weights[key], atol=1e-5, rtol=1e-4)
