"""The CLI's extract writes the UNet names training writes (kohya's diffusers-style names), worked out from
a checkpoint's keys alone; checked against the host's own name tables."""
import pytest
import torch

SD15 = {"num_res_blocks": [2, 2, 2, 2], "channel_mult": [1, 2, 4, 4], "transformer_depth": [1, 1, 1, 1, 1, 1, 0, 0],
        "transformer_depth_output": [1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0], "transformer_depth_middle": 1}
SDXL = {"num_res_blocks": [2, 2, 2], "channel_mult": [1, 2, 4], "transformer_depth": [0, 0, 2, 2, 10, 10],
        "transformer_depth_output": [0, 0, 0, 2, 2, 2, 10, 10, 10], "transformer_depth_middle": 10}


@pytest.mark.parametrize("config", [SD15, SDXL], ids=["sd15", "sdxl"])
def test_ldm_to_diffusers_matches_the_hosts_table(host, config):
    import comfy.utils
    from kiln.core.lora.unet_names import ldm_to_diffusers_unet
    table = {}   # the host accepts more than one diffusers name for a few layers (label_emb)
    for diff, ldm in comfy.utils.unet_to_diffusers(dict(config)).items():
        if ldm.endswith(".weight"):
            table.setdefault(ldm[:-len(".weight")], set()).add(diff[:-len(".weight")])
    assert len(table) > 200
    mapped = ldm_to_diffusers_unet(table)
    assert set(mapped) == set(table)
    assert not [(k, v) for k, v in mapped.items() if v not in table[k]]


def test_extract_names_are_the_names_training_writes(host, tiny_assets):
    import nodes
    from safetensors import safe_open
    from kiln.core.tools.extract import checkpoint_names
    from kiln.host.training import kohya_names_for_model
    with safe_open(str(tiny_assets.checkpoint_path), framework="pt") as fh:
        keys = list(fh.keys())
    from_file = {k: v[len("model."):] for k, v in checkpoint_names(keys).items() if k.startswith("lora_unet_")}
    with torch.inference_mode():
        model = nodes.CheckpointLoaderSimple().load_checkpoint(tiny_assets.checkpoint_name)[0]
    present = {k[len("model."):] for k in keys}
    # The host's table also names layers this model lacks (label_emb, downsamplers); training skips those.
    training = {k: v for k, v in kohya_names_for_model(model, None).items() if v in present}
    assert from_file == training
    assert not any("input_blocks" in k or "output_blocks" in k for k in from_file)
