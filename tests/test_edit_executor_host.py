"""control_images through the real executor: a graph where another node's IMAGE (EmptyImage -> ImageInvert, standing
in for a depth map or a pose render) is Kiln Load Dataset's controls, and a tiny Flux (Kontext's architecture) loaded
by the host's own loader nodes trains an edit LoRA on them through the host's reference latents."""
import numpy as np
import pytest
import torch
from PIL import Image

from conftest import REPO
from test_families_host import HOST_2026


def _prompt(dataset_path, template_train: dict) -> dict:
    from kiln.devtools import family_fixtures as ff
    train = dict(template_train, model=["unet", 0], clip=["te", 0], vae=["vae", 0], dataset=["data", 0],
                 output_name="kiln_edit_graph_controls", epochs=1, max_steps=2, batch_size=2,
                 gradient_checkpointing=False)
    for linked in ("network", "optimizer", "sample_prompts", "model_low_noise"):
        train.pop(linked, None)
    return {
        "unet": {"class_type": "UNETLoader", "inputs": {"unet_name": ff.FLUX_WORKFLOW_UNET, "weight_dtype": "default"}},
        "te": {"class_type": "DualCLIPLoader",
               "inputs": {"clip_name1": ff.CLIP_L_FILE, "clip_name2": ff.T5_FILE, "type": "flux"}},
        "vae": {"class_type": "VAELoader", "inputs": {"vae_name": ff.SD3_WORKFLOW_VAE}},
        "ctl": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 64, "batch_size": 2, "color": 0x2040f0}},
        "inv": {"class_type": "ImageInvert", "inputs": {"image": ["ctl", 0]}},
        "data": {"class_type": "KilnLoadDataset",
                 "inputs": {"path": str(dataset_path), "resolution": 64, "caption_source": "files",
                            "caption_extension": ".txt", "repeats": 1, "min_bucket_reso": 64, "max_bucket_reso": 64,
                            "bucket_reso_steps": 64, "control_images": ["inv", 0]}},
        "train": {"class_type": "KilnTrainLora", "inputs": train},
        "save": {"class_type": "KilnSaveLora",
                 "inputs": {"lora": ["train", 2], "filename": "kiln_edit_graph_controls", "overwrite": True}},
    }


def test_a_graph_image_is_the_controls_of_an_edit_bake(host, tmp_path, monkeypatch):
    from cli import runner
    from kiln.core.lora.io import load_lora_file
    from kiln.devtools import family_fixtures as ff
    from kiln.host import reference
    if ff.available("flux1-dev"):
        pytest.skip(ff.available("flux1-dev"))
    if not HOST_2026:
        pytest.skip("the 2025-10 host fixes Flux's widths when it detects the file, so no tiny Flux loads through its "
                    "UNETLoader")
    ff.ensure_family_workflow_assets("flux1-dev", REPO / ".cache" / "test-assets")
    folder = tmp_path / "1_edit"
    folder.mkdir()
    for i in range(2):
        Image.new("RGB", (64, 64), (230, 40 + 80 * i, 20)).save(folder / f"p{i}.png")
        (folder / f"p{i}.txt").write_text("make it red")
    template = runner.load_workflow(REPO / "workflows" / "train_edit_kontext.json")
    train = next(v["inputs"] for v in template.values() if v["class_type"] == "KilnTrainLora")
    refs, controls = [], []
    real_for_sample, real_with = reference.References.for_sample, reference.EditLatents.get

    def for_sample(self, i, dims, device):
        out = real_for_sample(self, i, dims, device)
        refs.append([tuple(r.shape) for r in out.get("reference_latents", [])])
        return out

    def get(self, dataset, batch):
        latents = real_with(self, dataset, batch)
        controls.extend(dataset.load_control(r, 0) for r in batch)
        return latents
    monkeypatch.setattr(reference.References, "for_sample", for_sample)
    monkeypatch.setattr(reference.EditLatents, "get", get)
    with ff.tiny_text_encoder_configs():
        result = runner.run_prompt(_prompt(tmp_path, train))
    assert result.success, result.error
    # every training forward got the graph's picture as its one reference latent, at the target's latent size
    assert refs and all(r == [(1, 16, 8, 8)] for r in refs), refs
    # ... and the picture is the graph's: EmptyImage's colour 0x2040f0, inverted by ImageInvert
    want = 1.0 - np.array([0x20, 0x40, 0xF0]) / 255.0
    assert controls and all(np.allclose(c.numpy().reshape(-1, 3).mean(0), want, atol=0.01) for c in controls)
    lora = load_lora_file(host.loras_dir() / "kiln_edit_graph_controls.safetensors")
    ups = [t for k, t in lora.tensors.items() if "lora_up" in k]
    assert ups and any(float(t.abs().max()) > 0 for t in ups), "the LoRA did not train"
