"""Every tool output loads through the host's LoraLoader with every key applied."""
import logging

import pytest
import torch


@pytest.fixture(scope="module")
def base(host, tiny_assets):
    import nodes
    with torch.inference_mode():
        model, clip, vae = nodes.CheckpointLoaderSimple().load_checkpoint(tiny_assets.checkpoint_name)[:3]
    return model, clip


def _random_lora(model, clip, seed, algo="lora"):
    from kiln.core.lora.value import KilnLora
    from kiln.host.training import kohya_names_for_model
    g = torch.Generator().manual_seed(seed)
    sd = {**model.model.state_dict(), **clip.cond_stage_model.state_dict()}
    tensors = {}
    for kohya, key in sorted(kohya_names_for_model(model, clip).items())[::7]:
        w = sd[key]
        if w.dim() not in (2, 4):
            continue
        out, rest = w.shape[0], w[0].numel()
        if algo == "loha":
            tensors.update({f"{kohya}.hada_w1_a": torch.randn(out, 4, generator=g) * 0.01,
                            f"{kohya}.hada_w1_b": torch.randn(4, rest, generator=g),
                            f"{kohya}.hada_w2_a": torch.randn(out, 4, generator=g) * 0.01,
                            f"{kohya}.hada_w2_b": torch.randn(4, rest, generator=g), f"{kohya}.alpha": torch.tensor(4.0)})
        else:
            tensors[f"{kohya}.lora_down.weight"] = torch.randn(4, *w.shape[1:], generator=g) * 0.05
            tensors[f"{kohya}.lora_up.weight"] = torch.randn(out, 4, *([1, 1] if w.dim() == 4 else []), generator=g) * 0.05
            tensors[f"{kohya}.alpha"] = torch.tensor(4.0)
    return KilnLora(tensors, {"ss_base_model_version": "sd_v1"})


def _loads_cleanly(host, model, clip, lora, name, caplog):
    import nodes
    from kiln.core.lora.io import save_lora
    path = host.loras_dir() / f"{name}.safetensors"
    save_lora(lora, path)
    caplog.clear()
    with caplog.at_level(logging.WARNING), torch.inference_mode():
        m, c = nodes.LoraLoader().load_lora(model, clip, f"{name}.safetensors", 1.0, 1.0)
    bad = [r.getMessage() for r in caplog.records if "lora key not loaded" in r.getMessage()]
    assert not bad, bad[:3]
    patched = set(m.patches) | set(c.patcher.patches)
    assert len(patched) == len(lora.modules), (len(patched), len(lora.modules))


def test_resize_merge_extract_outputs_load_in_the_host(host, base, caplog):
    from kiln.core.tools.extract import ExtractSpec, extract_lora
    from kiln.core.tools.merge import merge_loras
    from kiln.core.tools.resize import ResizeSpec, resize_lora
    from kiln.host.training import kohya_names_for_model
    model, clip = base
    a, b = _random_lora(model, clip, 1), _random_lora(model, clip, 2, "loha")
    _loads_cleanly(host, model, clip, resize_lora(a, ResizeSpec("fixed", 2))[0], "t_resized", caplog)
    _loads_cleanly(host, model, clip, resize_lora(b, ResizeSpec("sv_fro", 0.9, 16))[0], "t_resized_loha", caplog)
    _loads_cleanly(host, model, clip, merge_loras([(a, 0.5), (b, 0.5)]), "t_merged", caplog)
    _loads_cleanly(host, model, clip, merge_loras([(a, 0.5), (a, 0.5)], rank=3), "t_merged_r3", caplog)
    names = kohya_names_for_model(model, clip)
    sd_b = {**model.model.state_dict(), **clip.cond_stage_model.state_dict()}
    from kiln.core.lora.algorithms import module_delta
    sd_a = dict(sd_b)
    for module, parts in a.modules.items():
        key = names[module]
        sd_a[key] = sd_b[key].float() + module_delta(parts).reshape(sd_b[key].shape)
    lora, report = extract_lora(sd_a, sd_b, names, ExtractSpec("fixed", 4, conv_rank=4, clamp_quantile=1.0),
                                host_names={k: v[:-len(".weight")] for k, v in names.items()})
    assert {r.module for r in report} == set(a.modules)
    _loads_cleanly(host, model, clip, lora, "t_extracted", caplog)


def test_merge_lora_into_model_node_adds_the_delta_and_names_a_mismatched_module(host, base, caplog):
    from kiln.core.lora.value import KilnLora
    from kiln.core.lora.algorithms import module_delta
    from kiln.host.training import kohya_names_for_model, patched_weights
    from kiln.nodes.tools import KilnMergeLoraIntoModel
    model, clip = base
    lora = _random_lora(model, clip, 3)
    names = kohya_names_for_model(model, clip)
    caplog.clear()
    with caplog.at_level(logging.WARNING), torch.inference_mode():
        m, c, text = KilnMergeLoraIntoModel.execute(model, lora, 0.5, clip, 1.0, "TE=0").args
    assert not [r for r in caplog.records if "lora key not loaded" in r.getMessage()]
    after, before = patched_weights(m, c), patched_weights(model, clip)
    mods = sorted(lora.modules)
    picked = [m for m in mods if m.startswith("lora_te")][:3] + [m for m in mods if m.startswith("lora_unet")][:4]
    assert len(picked) == 7
    for module in picked:
        parts = lora.modules[module]
        key = names[module]
        factor = 0.0 if module.startswith("lora_te") else 0.5
        want = before[key] + factor * module_delta(parts).reshape(before[key].shape)
        torch.testing.assert_close(after[key], want, rtol=1e-4, atol=1e-5)
    module = next(m for m in lora.modules if m.startswith("lora_unet"))
    bad = KilnLora({k: (v[:, :1] if k == f"{module}.lora_down.weight" and v.dim() == 2 else
                        v[:, :1] if k == f"{module}.lora_down.weight" else v) for k, v in lora.tensors.items()})
    with pytest.raises(ValueError, match=module):
        KilnMergeLoraIntoModel.execute(model, bad, 1.0, clip)
