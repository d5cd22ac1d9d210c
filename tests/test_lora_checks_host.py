"""Silent corruption caught: NaN/inf LoRAs refused at load and before applying or merging, Apply LoRA runs
Merge LoRA Into Model's fit check, Inspect names the module in its rank error."""
import logging

import pytest
import torch

from test_tools_host import _random_lora, base  # noqa: F401  (the module-scoped model fixture)


def test_nan_and_inf_loras_are_refused_naming_the_modules(host, base):  # noqa: F811
    from kiln.core.lora.io import save_lora
    from kiln.core.lora.value import KilnLora
    from kiln.nodes.tools import KilnInspectLora, KilnLoadLora, KilnMergeLoraIntoModel, KilnResizeLora
    from kiln.nodes.train import KilnApplyLora
    model, clip = base
    lora = _random_lora(model, clip, 5)
    mods = sorted(m for m in lora.modules if m.startswith("lora_unet"))
    tensors = dict(lora.tensors)
    tensors[f"{mods[0]}.lora_up.weight"] = tensors[f"{mods[0]}.lora_up.weight"].clone().fill_(float("nan"))
    up = tensors[f"{mods[1]}.lora_down.weight"].clone()
    up.view(-1)[3] = float("inf")
    tensors[f"{mods[1]}.lora_down.weight"] = up
    broken = KilnLora(tensors, lora.metadata)
    save_lora(broken, host.loras_dir() / "broken_nan.safetensors")
    with pytest.raises(ValueError, match="broken_nan.safetensors: 2 module") as err:
        KilnLoadLora.execute("broken_nan.safetensors")
    assert mods[0] in str(err.value) and mods[1] in str(err.value)
    with pytest.raises(ValueError, match=mods[0]), torch.inference_mode():
        KilnApplyLora.execute(model, broken, 1.0, clip, 1.0)
    with pytest.raises(ValueError, match=mods[0]), torch.inference_mode():
        KilnMergeLoraIntoModel.execute(model, broken, 1.0, clip)


def test_apply_lora_names_a_wrong_shaped_module_and_mismatched_ranks(host, base, caplog):  # noqa: F811
    from kiln.core.lora.value import KilnLora
    from kiln.nodes.tools import KilnInspectLora
    from kiln.nodes.train import KilnApplyLora
    model, clip = base
    lora = _random_lora(model, clip, 6)
    with caplog.at_level(logging.WARNING), torch.inference_mode():
        m, c = KilnApplyLora.execute(model, lora, 1.0, clip, 1.0)
    assert len(m.patches) + len(c.patcher.patches) == len(lora.modules)
    module = sorted(n for n in lora.modules if n.startswith("lora_unet") and lora.modules[n]["lora_down.weight"].dim() == 2)[0]
    wrong = dict(lora.tensors)
    wrong[f"{module}.lora_down.weight"] = wrong[f"{module}.lora_down.weight"][:, :7].clone()
    with pytest.raises(ValueError, match=f"{module}: the LoRA's delta"), torch.inference_mode():
        KilnApplyLora.execute(model, KilnLora(wrong, lora.metadata), 1.0, clip, 1.0)
    ranks = dict(lora.tensors)
    ranks[f"{module}.lora_up.weight"] = ranks[f"{module}.lora_up.weight"][:, :3].clone()
    with pytest.raises(ValueError, match=f"{module}: lora_up has rank 3 but lora_down has rank 4"), torch.inference_mode():
        KilnApplyLora.execute(model, KilnLora(ranks, lora.metadata), 1.0, clip, 1.0)
    with pytest.raises(ValueError, match=f"^{module}: lora_up has rank 3"):
        KilnInspectLora.execute(KilnLora(ranks, lora.metadata))
