"""The thin slice through the real host: the shipped train_then_sample workflow, then the saved file
through the host's own LoraLoader."""
import logging
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import REPO


@pytest.fixture(scope="module")
def demo_run(host, tiny_assets):
    from cli import runner
    result = runner.run_workflow(REPO / "workflows" / "train_then_sample.json")
    assert result.success, result.error
    return result


def _node_id(workflow_result, class_type):
    import json
    ui = json.loads((REPO / "workflows" / "train_then_sample.json").read_text())
    return [str(n["id"]) for n in ui["nodes"] if n["type"] == class_type]


def _image(result, node_id):
    from cli import runner
    item = result.outputs[node_id]["images"][0]
    import folder_paths
    path = Path(folder_paths.get_output_directory()) / item["subfolder"] / item["filename"]
    return np.asarray(Image.open(path), dtype=np.int16)


def _save_image_ids(prefix):
    import json
    ui = json.loads((REPO / "workflows" / "train_then_sample.json").read_text())
    return [str(n["id"]) for n in ui["nodes"] if n["type"] == "SaveImage" and n["widgets_values"][0] == prefix][0]


def test_training_lowers_the_loss(demo_run):
    train_id = _node_id(demo_run, "KilnTrainLora")[0]
    loss = demo_run.outputs[train_id]["kiln_loss"][0]
    assert len(loss["loss"]) == 30
    assert loss["probe_end"] < loss["probe_start"] * 0.95, loss
    # The per-step loss, noisy as it is, also ends lower than it starts.
    assert np.mean(loss["loss"][-10:]) < np.mean(loss["loss"][:10])


def test_lora_changes_the_sample(demo_run):
    base = _image(demo_run, _save_image_ids("kiln_demo_base"))
    lora = _image(demo_run, _save_image_ids("kiln_demo_lora"))
    assert base.shape == lora.shape
    assert np.abs(base - lora).mean() > 1.0


def test_saved_file_is_kohya_and_loads_in_lora_loader(demo_run, host, caplog):
    from kiln.core.lora.io import load_lora_file
    from cli import runner
    path = host.loras_dir() / "kiln_demo.safetensors"
    lora = load_lora_file(path)
    meta = lora.metadata
    for key in ("ss_network_dim", "ss_network_alpha", "ss_network_module", "ss_base_model_version",
                "ss_tag_frequency", "sshs_model_hash"):
        assert key in meta, key
    assert meta["ss_network_module"] == "networks.lora" and meta["ss_base_model_version"] == "sd_v1"
    assert meta["ss_network_dim"] == "8"
    modules = lora.modules
    assert modules and all(set(m) == {"lora_up.weight", "lora_down.weight", "alpha"} for m in modules.values())
    assert all(name.startswith("lora_unet_") for name in modules)
    # diffusers-style names, as kohya's scripts write for SD1.5
    assert any(name.startswith("lora_unet_down_blocks_0_attentions_0_") for name in modules)

    prompt = {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "kiln-tiny-sd15.safetensors"}},
        "2": {"class_type": "LoraLoader", "inputs": {"model": ["1", 0], "clip": ["1", 1],
                                                     "lora_name": "kiln_demo.safetensors",
                                                     "strength_model": 1.0, "strength_clip": 1.0}},
        "3": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["1", 1], "text": "kiln shapes, red circle"}},
        "4": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["1", 1], "text": ""}},
        "5": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
        "6": {"class_type": "KSampler", "inputs": {"model": ["2", 0], "positive": ["3", 0], "negative": ["4", 0],
                                                   "latent_image": ["5", 0], "seed": 42, "steps": 10, "cfg": 4.0,
                                                   "sampler_name": "euler", "scheduler": "normal", "denoise": 1.0}},
        "7": {"class_type": "VAEDecode", "inputs": {"samples": ["6", 0], "vae": ["1", 2]}},
        "8": {"class_type": "SaveImage", "inputs": {"images": ["7", 0], "filename_prefix": "kiln_loraloader"}},
    }
    with caplog.at_level(logging.WARNING):
        result = runner.run_prompt(prompt)
    assert result.success, result.error
    assert not [r for r in caplog.records if "lora key not loaded" in r.getMessage()]
    from_file = _image(result, "8")
    in_graph = _image(demo_run, _save_image_ids("kiln_demo_lora"))
    assert np.abs(from_file - in_graph).max() <= 1
