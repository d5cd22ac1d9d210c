"""modelspec.* keys for every family, ss_sd_model_name from the loaded checkpoint, extract's base model."""
import pytest
import torch

from kiln.core.lora.metadata import MODELSPEC_ARCHITECTURE, modelspec_metadata, training_metadata
from kiln.core.net.spec import NetworkSpec
from kiln.core.train.loop import TrainConfig
from kiln.core.train.objective import ObjectiveSpec
from kiln.core.train.optim import OptimizerSpec

FAMILIES = ["sd1", "sd2", "sdxl", "sd3", "flux1-dev", "flux1-schnell", "chroma", "flux2", "qwen-image", "z-image",
            "wan", "lumina2", "hidream"]


@pytest.mark.parametrize("family", FAMILIES)
def test_every_family_has_a_modelspec_architecture(family):
    meta = modelspec_metadata(family, title="my lora", created_at=1.7e9, resolution=768)
    assert meta["modelspec.architecture"].endswith("/lora") and meta["modelspec.title"] == "my lora"
    assert meta["modelspec.resolution"] == "768x768" and meta["modelspec.sai_model_spec"] == "1.0.1"
    assert meta["modelspec.implementation"] and meta["modelspec.date"].startswith("20")


def test_kohya_architecture_strings_and_prediction_types():
    assert modelspec_metadata("sd1", title="t", created_at=0)["modelspec.architecture"] == "stable-diffusion-v1/lora"
    assert modelspec_metadata("sdxl", title="t", created_at=0)["modelspec.architecture"] == "stable-diffusion-xl-v1-base/lora"
    v = modelspec_metadata("sd2", title="t", created_at=0, v_parameterization=True)
    assert v["modelspec.architecture"] == "stable-diffusion-v2-768-v/lora" and v["modelspec.prediction_type"] == "v"
    assert "modelspec.prediction_type" not in modelspec_metadata("flux1-dev", title="t", created_at=0)
    assert modelspec_metadata("unknown-family", title="t", created_at=0) == {}
    assert set(FAMILIES) <= set(MODELSPEC_ARCHITECTURE)


def test_training_metadata_carries_modelspec_and_the_model_name():
    meta = training_metadata(network=NetworkSpec(), optimizer=OptimizerSpec(), dataset_meta={"ss_resolution": "(640, 640)"},
                             train=TrainConfig(objective=ObjectiveSpec(min_timestep=0.2)), base_model_version="sd_v1",
                             output_name="mine", steps=5, epoch=1, total_steps=10, started_at=1.7e9,
                             model_name="base.safetensors", clip_skip=2)
    assert meta["ss_sd_model_name"] == "base.safetensors"
    assert meta["modelspec.architecture"] == "stable-diffusion-v1/lora" and meta["modelspec.title"] == "mine"
    assert meta["modelspec.resolution"] == "640x640" and meta["modelspec.prediction_type"] == "epsilon"
    assert meta["modelspec.encoder_layer"] == "2" and meta["modelspec.timestep_range"] == "200,1000"


def test_extract_from_files_writes_the_base_model_version():
    from kiln.core.tools.extract import (ExtractSpec, base_model_version_of_checkpoint, checkpoint_names,
                                              extract_lora)
    g = torch.Generator().manual_seed(0)
    key = "model.diffusion_model.middle_block.1.proj_in.weight"
    base = {key: torch.randn(16, 8, generator=g), "cond_stage_model.transformer.text_model.final_layer_norm.weight": torch.ones(8)}
    tuned = dict(base, **{key: base[key] + torch.randn(16, 2, generator=g) @ torch.randn(2, 8, generator=g)})
    version = base_model_version_of_checkpoint(base)
    lora, _ = extract_lora(tuned, base, checkpoint_names(base), ExtractSpec("fixed", 2, clamp_quantile=1.0),
                           base_model_version=version, title="diff")
    assert version == "sd_v1" and lora.metadata["ss_base_model_version"] == "sd_v1"
    assert lora.metadata["modelspec.architecture"] == "stable-diffusion-v1/lora"
    assert base_model_version_of_checkpoint(["conditioner.embedders.1.model.x"]) == "sdxl_base_v1-0"
