"""diffusers / PEFT / ai-toolkit ``transformer.`` LoRAs for Flux.1, FLUX.2, SD3, Wan and Z-Image, read into
the host's layout (fused q/k/v, Flux's fused single-block linear1, SD3's joint blocks), checked by their
weight deltas in core, against the host's own diffusers key maps, and through the host's LoraLoader."""
import logging

import pytest
import torch

from conftest import REPO


def _pair(out_f, in_f, rank, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(rank, in_f, generator=g), torch.randn(out_f, rank, generator=g)


def _delta(lora_tensors, name):
    """The module's delta as a matrix (a conv's flattened over its input and kernel)."""
    down, up = lora_tensors[f"{name}.lora_down.weight"], lora_tensors[f"{name}.lora_up.weight"]
    return (up.float().flatten(1) @ down.float().flatten(1)) * float(lora_tensors[f"{name}.alpha"]) / down.shape[0]


def test_flux_split_qkv_and_single_linear1_become_fused_deltas():
    from kiln.core.lora.formats import to_kohya
    from kiln.core.lora.value import KilnLora
    h, tensors, parts = 8, {}, {}
    # double block: q and v with different ranks and alphas, no k (its rows stay zero); single block: all four
    for i, (path, out_f, rank, alpha) in enumerate([
            ("transformer_blocks.0.attn.to_q", h, 2, 1.0), ("transformer_blocks.0.attn.to_v", h, 3, 6.0),
            ("single_transformer_blocks.0.attn.to_q", h, 2, None),
            ("single_transformer_blocks.0.attn.to_k", h, 2, None),
            ("single_transformer_blocks.0.attn.to_v", h, 2, None),
            ("single_transformer_blocks.0.proj_mlp", 4 * h, 2, None)]):
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
    """Qwen-Image's host names are the diffusers names; only Flux or SD3 evidence (single blocks, SD3's
    feed-forward/modulation names, metadata) makes double-block keys another family's."""
    from kiln.core.lora.formats import to_kohya
    from kiln.core.lora.value import KilnLora
    down, up = _pair(4, 4, 2, 0)
    keys = {"transformer.transformer_blocks.0.attn.to_q.lora_A.weight": down,
            "transformer.transformer_blocks.0.attn.to_q.lora_B.weight": up}
    assert "lora_unet_transformer_blocks_0_attn_to_q.lora_down.weight" in to_kohya(KilnLora(keys, {})).tensors
    flux = to_kohya(KilnLora(keys, {"modelspec.architecture": "flux-1-dev/lora"})).tensors
    assert "lora_unet_double_blocks_0_img_attn_qkv.lora_down.weight" in flux
    sd3 = to_kohya(KilnLora(keys, {"modelspec.architecture": "stable-diffusion-3.5-large/lora"})).tensors
    assert "lora_unet_joint_blocks_0_x_block_attn_qkv.lora_down.weight" in sd3
    # SD3's feed-forward names without single blocks: SD3's joint blocks, never Flux's double blocks.
    ff = {"transformer.transformer_blocks.0.ff_context.net.2.lora_A.weight": down,
          "transformer.transformer_blocks.0.ff_context.net.2.lora_B.weight": up}
    assert "lora_unet_joint_blocks_0_context_block_mlp_fc2.lora_down.weight" in to_kohya(KilnLora(ff, {})).tensors


def test_sd3_pre_only_modulation_swaps_scale_and_shift_and_peft_prefix_reads_the_same():
    """diffusers orders SD3's last context adaLN and norm_out as (scale, shift), the host as (shift, scale):
    those deltas arrive with their halves swapped; a 6-vector adaLN is untouched. PEFT's
    ``base_model.model.`` prefix reads as ``transformer.``."""
    from kiln.core.lora.formats import to_kohya
    from kiln.core.lora.value import KilnLora
    h, tensors = 8, {}
    for i, (path, out_f) in enumerate([("transformer_blocks.1.norm1_context.linear", 2 * h),
                                       ("transformer_blocks.0.norm1_context.linear", 6 * h),
                                       ("norm_out.linear", 2 * h), ("transformer_blocks.0.attn.to_k", h)]):
        down, up = _pair(out_f, h, 2, i)
        tensors[f"transformer.{path}.lora_A.weight"], tensors[f"transformer.{path}.lora_B.weight"] = down, up
    out = to_kohya(KilnLora(tensors, {})).tensors

    def file_delta(path):
        return tensors[f"transformer.{path}.lora_B.weight"] @ tensors[f"transformer.{path}.lora_A.weight"]
    last = file_delta("transformer_blocks.1.norm1_context.linear")
    torch.testing.assert_close(_delta(out, "lora_unet_joint_blocks_1_context_block_adaLN_modulation_1"),
                               torch.cat([last[h:], last[:h]]))
    torch.testing.assert_close(_delta(out, "lora_unet_joint_blocks_0_context_block_adaLN_modulation_1"),
                               file_delta("transformer_blocks.0.norm1_context.linear"))
    final = file_delta("norm_out.linear")
    torch.testing.assert_close(_delta(out, "lora_unet_final_layer_adaLN_modulation_1"),
                               torch.cat([final[h:], final[:h]]))
    qkv = _delta(out, "lora_unet_joint_blocks_0_x_block_attn_qkv")
    torch.testing.assert_close(qkv[h:2 * h], file_delta("transformer_blocks.0.attn.to_k"))
    assert qkv[:h].abs().max() == 0 and qkv[2 * h:].abs().max() == 0
    peft = to_kohya(KilnLora({"base_model.model." + k[len("transformer."):]: v for k, v in tensors.items()}, {}))
    assert set(peft.tensors) == set(out)
    for k in out:
        torch.testing.assert_close(peft.tensors[k], out[k])


def test_z_image_diffusers_names_under_the_comfyui_prefix():
    """The host reads Z-Image's diffusers names under ``diffusion_model.`` too; Kiln reads them the same
    as under ``transformer.``, and leaves ComfyUI's own ``diffusion_model.`` names alone."""
    from kiln.core.lora.formats import to_kohya
    from kiln.core.lora.value import KilnLora
    down, up = _pair(4, 4, 2, 0)
    keys = {}
    for path in ("layers.0.attention.to_v", "all_final_layer.2-1.linear", "layers.0.feed_forward.w1"):
        keys[f"{path}.lora_A.weight"], keys[f"{path}.lora_B.weight"] = down, up
    via_transformer = to_kohya(KilnLora({"transformer." + k: v for k, v in keys.items()}, {})).tensors
    via_comfy = to_kohya(KilnLora({"diffusion_model." + k: v for k, v in keys.items()}, {})).tensors
    assert {k.split(".")[0] for k in via_comfy} == {"lora_unet_layers_0_attention_qkv", "lora_unet_final_layer_linear",
                                                    "lora_unet_layers_0_feed_forward_w1"}
    assert set(via_comfy) == set(via_transformer)
    for k in via_comfy:
        torch.testing.assert_close(via_comfy[k], via_transformer[k])
    native = to_kohya(KilnLora({"diffusion_model.double_blocks.0.img_attn.qkv.lora_A.weight": down,
                                "diffusion_model.double_blocks.0.img_attn.qkv.lora_B.weight": up}, {})).tensors
    assert "lora_unet_double_blocks_0_img_attn_qkv.lora_down.weight" in native


def test_flux2_names_and_two_names_for_one_layer_add_up():
    """FLUX.2's own diffusers names (SwiGLU feed-forwards, fused single-block projections, global
    modulations); where a file names one host layer twice (ff.net.0.proj and ff.linear_in), both deltas
    apply, as in the host's loader."""
    from kiln.core.lora.formats import to_kohya
    from kiln.core.lora.value import KilnLora
    h, tensors, expected = 8, {}, {}
    for i, (path, out_f, target) in enumerate([
            ("single_transformer_blocks.0.attn.to_qkv_mlp_proj", 9 * h, "single_blocks_0_linear1"),
            ("single_transformer_blocks.0.attn.to_out", h, "single_blocks_0_linear2"),
            ("double_stream_modulation_img.linear", 12 * h, "double_stream_modulation_img_lin"),
            ("time_guidance_embed.guidance_embedder.linear_2", h, "guidance_in_out_layer"),
            ("transformer_blocks.0.ff.linear_in", 6 * h, "double_blocks_0_img_mlp_0"),
            ("transformer_blocks.0.ff.net.0.proj", 6 * h, "double_blocks_0_img_mlp_0")]):
        down, up = _pair(out_f, h, 2 + i % 2, i)
        tensors[f"transformer.{path}.lora_A.weight"], tensors[f"transformer.{path}.lora_B.weight"] = down, up
        tensors[f"transformer.{path}.alpha"] = torch.tensor(1.0)
        expected[target] = expected.get(target, 0) + up @ down / down.shape[0]
    out = to_kohya(KilnLora(tensors, {})).tensors
    assert {k.split(".")[0] for k in out} == {"lora_unet_" + t for t in expected}
    for target, delta in expected.items():
        torch.testing.assert_close(_delta(out, "lora_unet_" + target), delta)


def _lora_from_core_table(model, layout, rank=2, seed=0):
    """A diffusers-named LoRA on every module of ``layout``'s table that the tiny model has (block 0 of
    each stack), each part sized from the host weight it lands in (for Wan, whose diffusers names the
    host's loader has no map for)."""
    import re
    from kiln.core.lora.transformer_layouts import LAYOUTS
    sd = model.model.diffusion_model.state_dict()
    tensors, g = {}, torch.Generator().manual_seed(seed)
    for rule in LAYOUTS[layout]:
        path = rule.pattern.replace(r"(\d+)", "0").replace("\\.", ".")
        m = re.fullmatch(rule.pattern, path)
        assert m, (rule.pattern, path)
        target = rule.host.format(*m.groups()) + ".weight"
        if target not in sd:
            continue
        out_f, in_f = sd[target].shape
        if rule.part is not None:
            out_f = out_f // sum(rule.widths) * rule.widths[rule.part]
        tensors.update(_module_lora(path, (out_f, in_f), rank, g))
    return tensors


def _module_lora(path, shape, rank, g):
    """lora_A/lora_B/alpha for one module whose weight (or fused part) has ``shape`` (Linear or conv)."""
    out_f, in_f, *kernel = shape
    return {f"transformer.{path}.lora_A.weight": torch.randn(rank, in_f, *kernel, generator=g) * 0.1,
            f"transformer.{path}.lora_B.weight": torch.randn(out_f, rank, *[1] * len(kernel), generator=g) * 0.1,
            f"transformer.{path}.alpha": torch.tensor(1.0)}


def _host_diffusers_map(model):
    """The host loader's own diffusers names for this model's Linear/conv weights:
    ``<diffusers path>`` -> (host key, (dim, start, length) or None, function or None)."""
    import comfy.lora
    sd = model.model.state_dict()
    out = {}
    for name, to in comfy.lora.model_lora_keys_unet(model.model, {}).items():
        if not name.startswith("transformer."):
            continue
        key, offset, function = (to, None, None) if isinstance(to, str) else (to[0], to[1], (to + (None,))[2])
        if key in sd and sd[key].dim() >= 2:
            out[name[len("transformer."):]] = (key, offset, function)
    return out


def _skip_without_host_map(family):
    """Lumina2 models read Z-Image's diffusers names in the hosts that have z_image_to_diffusers (2026); the
    2025-10 host's LoraLoader has no diffusers names for them, so there is nothing to compare with."""
    import comfy.utils
    if family == "lumina2" and not hasattr(comfy.utils, "z_image_to_diffusers"):
        pytest.skip("this ComfyUI's LoraLoader has no diffusers names for Lumina2 "
                    "(no comfy.utils.z_image_to_diffusers)")


# Names a real file of one Flux generation never carries (the host's map lists both generations'):
# Flux.1's split single-block projections and feed-forward/embedder names in a FLUX.2 file, FLUX.2's in a Flux.1 one.
_NOT_IN = {"flux2": r"(single_transformer_blocks\.\d+\.(attn\.to_[qkv]|proj_mlp|proj_out|norm\.linear)|"
                    r"transformer_blocks\.\d+\.ff(_context)?\.net\..*|time_text_embed\..*)",
           "flux1-dev": r"(single_transformer_blocks\.\d+\.attn\.(to_qkv_mlp_proj|to_out)|"
                        r"transformer_blocks\.\d+\.ff(_context)?\.linear_(in|out))"}


@pytest.mark.parametrize("family,layout", [("flux1-dev", "flux"), ("flux2", "flux"), ("sd3", "sd3"),
                                           ("z-image", "z-image"), ("lumina2", "z-image")])
def test_core_tables_agree_with_the_hosts_diffusers_maps(family, layout, host):
    """Every diffusers name the host's LoraLoader maps onto a Linear/conv of the family's model lands, by
    core's table (or unchanged where no rule names it), on the same host weight, in the same rows, with
    the same scale/shift swap; so the table cannot drift from the host's flux/mmdit/z_image_to_diffusers."""
    from kiln.core.lora.transformer_layouts import layout_of, rule_for
    from kiln.devtools import family_fixtures as ff
    if ff.available(family):
        pytest.skip(ff.available(family))
    _skip_without_host_map(family)
    model = ff.config_built_model(family)
    sd = model.model.state_dict()
    host_map = _host_diffusers_map(model)
    assert len(host_map) >= 10, host_map
    assert layout_of(host_map, {}) == layout
    for path, (key, offset, function) in host_map.items():
        found = rule_for(layout, path)
        if found is None:
            assert key == f"diffusion_model.{path}.weight", (path, key)
            continue
        target, rule = found
        assert f"diffusion_model.{target}.weight" == key, (path, key)
        if rule.part is None:
            assert offset is None, (path, offset)
        else:
            unit = offset[2] // rule.widths[rule.part]
            assert offset == (0, unit * sum(rule.widths[:rule.part]), unit * rule.widths[rule.part]), (path, offset)
        swaps = rule.swap == "always" or (rule.swap == "pre_only" and sd[key].shape[0] == 2 * sd[key].shape[1])
        assert swaps == (function is not None), (path, rule.swap, function)


def _patched(mp):
    import comfy.lora
    sd = mp.model.state_dict()
    return {k: comfy.lora.calculate_weight(p, sd[k].float().clone(), k) for k, p in mp.patches.items()}


@pytest.mark.parametrize("family,layout", [("flux1-dev", "flux"), ("flux2", "flux"), ("sd3", "sd3"), ("wan", "wan"),
                                           ("z-image", "z-image"), ("lumina2", "z-image")])
def test_kiln_reads_diffusers_transformer_loras_as_the_host_applies_them(family, layout, host, caplog):
    """A diffusers-named LoRA on every Linear/conv the host's loader has a diffusers name for (Wan: every
    module of Kiln's table), plus FLUX.2's modules the host has no name for: Kiln's reading names each
    module's host layer (none dropped), applies with no "lora key not loaded", and patches the same
    weights as the host's LoraLoader on the same file; the FLUX.2-only modules get exactly the file's
    deltas."""
    import re
    import nodes
    from safetensors.torch import save_file
    from kiln.core.lora.formats import to_kohya
    from kiln.core.lora.io import load_lora_file
    from kiln.core.lora.transformer_layouts import FLUX2_KILN_ONLY, LAYOUTS
    from kiln.devtools import family_fixtures as ff
    from kiln.host.training import apply_lora
    if ff.available(family):
        pytest.skip(ff.available(family))
    _skip_without_host_map(family)
    model = ff.config_built_model(family)
    sd = model.model.state_dict()
    g = torch.Generator().manual_seed(0)
    host_map = _host_diffusers_map(model)
    extra, expected_targets = {}, set()
    if layout == "wan":
        tensors = _lora_from_core_table(model, "wan")
    else:
        tensors = {}
        for path, (key, offset, _) in sorted(host_map.items()):
            if family in _NOT_IN and re.fullmatch(_NOT_IN[family], path):
                continue
            shape = sd[key].shape if offset is None else (offset[2], *sd[key].shape[1:])
            tensors.update(_module_lora(path, shape, 2, g))
            expected_targets.add(key)
        if family == "flux2":
            for rule in LAYOUTS["flux"]:
                path = rule.pattern.replace("\\.", ".")
                key = f"diffusion_model.{rule.host}.weight"
                if path.startswith(FLUX2_KILN_ONLY) and key in sd:
                    extra.update(_module_lora(path, sd[key].shape, 2, g))
                    expected_targets.add(key)
            assert len(extra) == 3 * 7, sorted(extra)
    modules = {k.rsplit(".", 2)[0] for k in tensors if k.endswith("lora_A.weight")}
    assert len(modules) >= 4, modules
    # Kiln reads the file as Kiln Load LoRA does; the host's LoraLoader reads it without the FLUX.2 modules
    # it has no names for (it would report them as not loaded).
    kiln_file = host.loras_dir() / f"kiln_diffusers_{family}_all.safetensors"
    save_file({**tensors, **extra}, str(kiln_file))
    kiln = to_kohya(load_lora_file(kiln_file))
    with caplog.at_level(logging.WARNING), torch.inference_mode():
        via_kiln, _ = apply_lora(model, None, kiln, 1.0, 0.0)
    assert not [r for r in caplog.records if "lora key not loaded" in r.getMessage()], caplog.text
    names = {k.split(".")[0] for k in kiln.tensors}
    assert len(via_kiln.patches) == len(names)
    kiln_weights = _patched(via_kiln)
    if expected_targets:   # every module of the file reached its host layer: none dropped, none extra
        assert set(kiln_weights) == expected_targets
    base = model.model.state_dict()
    for name in names:
        key = next(k for k in kiln_weights
                   if "lora_unet_" + k[len("diffusion_model."):-len(".weight")].replace(".", "_") == name)
        torch.testing.assert_close((kiln_weights[key] - base[key].float()).flatten(1), _delta(kiln.tensors, name),
                                   atol=1e-5, rtol=1e-4)
    for path in {k.rsplit(".", 2)[0][len("transformer."):] for k in extra if k.endswith("lora_A.weight")}:
        target = next(r.host for r in LAYOUTS["flux"] if r.pattern.replace("\\.", ".") == path)
        file_delta = extra[f"transformer.{path}.lora_B.weight"] @ extra[f"transformer.{path}.lora_A.weight"] / 2
        key = f"diffusion_model.{target}.weight"
        torch.testing.assert_close(kiln_weights[key] - base[key].float(), file_delta, atol=1e-5, rtol=1e-4)
    path = host.loras_dir() / f"kiln_diffusers_{family}.safetensors"
    save_file(tensors, str(path))
    caplog.clear()
    with caplog.at_level(logging.WARNING), torch.inference_mode():
        via_file, _ = nodes.LoraLoader().load_lora(model, None, path.name, 1.0, 0.0)
    if layout == "wan":   # the host's LoraLoader has no diffusers map for Wan: Kiln's reading is the only one
        return
    assert not [r for r in caplog.records if "lora key not loaded" in r.getMessage()], caplog.text
    file_weights = _patched(via_file)
    host_only = {f"diffusion_model.{r.host}.weight" for r in LAYOUTS["flux"]
                 if r.pattern.replace("\\.", ".").startswith(FLUX2_KILN_ONLY)} if extra else set()
    assert set(file_weights) == expected_targets - host_only
    for key in file_weights:
        torch.testing.assert_close(kiln_weights[key], file_weights[key], atol=1e-5, rtol=1e-4)
