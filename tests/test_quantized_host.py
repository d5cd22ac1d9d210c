"""Training on quantized base weights through the real host: UNETLoader's fp8 weight dtypes, the scaled-fp8
layout and (2026 host) quantized mixed-precision checkpoints. Adapters train in bypass, the base weights keep
their storage, every targeted layer (quantized ones included) gets an adapter, the loss stays close to the
full-precision run, and the saved file loads with every key on the full-precision model."""
import logging

import numpy as np
import pytest
import torch

from conftest import REPO

STEPS = 4


@pytest.fixture(scope="module")
def quant(host, tiny_assets, tmp_path_factory):
    import folder_paths
    import nodes
    from kiln.core.data import DatasetConfig, load_dataset
    from kiln.devtools import fixtures
    from kiln.devtools.quant_fixtures import write_quantized_unet_files
    folder = tmp_path_factory.mktemp("diffusion_models")
    folder_paths.add_model_folder_path("diffusion_models", str(folder), is_default=True)
    prefix = "model.diffusion_model."
    unet_sd = {k[len(prefix):]: v for k, v in fixtures.tiny_unet_state_dict(0).items()}
    files = write_quantized_unet_files(folder, unet_sd, "kiln-tiny-sd15")
    with torch.inference_mode():
        _, clip, vae = nodes.CheckpointLoaderSimple().load_checkpoint(tiny_assets.checkpoint_name)[:3]
    dataset = load_dataset(DatasetConfig(path=str(tiny_assets.dataset_dir), resolution=64, min_bucket_reso=64,
                                         max_bucket_reso=128, bucket_reso_steps=64))
    return files, clip, vae, dataset


def _load(name, weight_dtype="default"):
    import nodes
    with torch.inference_mode():
        return nodes.UNETLoader().load_unet(name, weight_dtype)[0]


def _bake(model, quant, name):
    from kiln.core.net.spec import NetworkSpec
    from kiln.core.train.loop import TrainConfig
    from kiln.core.train.optim import OptimizerSpec
    from kiln.core.train.specs import SaveSpec
    from kiln.host.bake import bake
    _, clip, vae, dataset = quant
    with torch.inference_mode():
        return bake(model, clip, vae, dataset, NetworkSpec(rank=4, alpha=4.0),
                    OptimizerSpec(lr=2e-3, scheduler="constant"), TrainConfig(max_steps=STEPS, seed=0, probe_samples=2),
                    SaveSpec(output_name=name, save_dtype="fp32"))


@pytest.fixture(scope="module")
def full_precision(quant):
    return _bake(_load(quant[0].fp16), quant, "q_fp16")


def _storages(model, layers):
    from kiln.devtools.quant_fixtures import weight_storage
    dm = model.model.diffusion_model
    return {weight_storage(dm.get_submodule(name)) for name in layers}


CASES = [("fp16", "fp8_e4m3fn", {"float8_e4m3fn"}), ("fp16", "fp8_e5m2", {"float8_e5m2"}),
         ("scaled_fp8", "default", {"float8_e4m3fn", "quantized"}), ("mixed_fp8", "default", {"quantized"})]


@pytest.mark.parametrize("file_kind,weight_dtype,storage", CASES, ids=[f"{c[0]}-{c[1]}" for c in CASES])
def test_training_on_quantized_base_weights(quant, full_precision, file_kind, weight_dtype, storage, host, caplog):
    import comfy.sd
    from kiln.devtools.quant_fixtures import host_loads_mixed_precision
    if file_kind == "mixed_fp8" and not host_loads_mixed_precision():
        pytest.skip("this host has no quantized mixed-precision checkpoints (comfy.quant_ops)")
    files = quant[0]
    model = _load(getattr(files, file_kind), weight_dtype)
    found = _storages(model, files.quantized_layers)
    assert found and found <= storage, f"the host loaded the weights as {found}, expected {storage}"
    result = _bake(model, quant, f"q_{file_kind}_{weight_dtype}")

    # Bypass: the base weights still have their quantized storage and never require gradients.
    assert _storages(model, files.quantized_layers) == found
    assert not any(p.requires_grad for p in model.model.diffusion_model.parameters())
    # Every layer trained on the full-precision model is trained here too (quantized Linears included).
    assert set(result.lora.tensors) == set(full_precision.lora.tensors)
    quantized_modules = [k for k in result.lora.tensors if k.endswith("attn1_to_q.lora_up.weight")]
    assert quantized_modules and all(result.lora.tensors[k].abs().max() > 0 for k in quantized_modules)

    losses = np.array([v for _, v in result.result.losses])
    reference = np.array([v for _, v in full_precision.result.losses])
    assert np.isfinite(losses).all() and len(losses) == STEPS
    np.testing.assert_allclose(losses, reference, rtol=0.05)
    assert abs(result.result.probe_end - full_precision.result.probe_end) < 0.05 * full_precision.result.probe_end

    # The file loads on the full-precision model with every key applied, and moves it like the fp16 LoRA does.
    fp16 = _load(files.fp16)
    with caplog.at_level(logging.WARNING), torch.inference_mode():
        patched, _ = comfy.sd.load_lora_for_models(fp16, None, dict(result.lora.tensors), 1.0, 0.0)
    assert not [r for r in caplog.records if "lora key not loaded" in r.getMessage()]
    assert len(patched.patches) == len({k.split(".")[0] for k in result.lora.tensors})
    # Same direction as the fp16 run (all up factors together: after 4 Adam steps, which move every entry by
    # about the lr whatever its gradient, single layers are noisy; unrelated LoRAs give a cosine near 0).
    ups = sorted(k for k in full_precision.lora.tensors if k.endswith("lora_up.weight"))
    mine = torch.cat([result.lora.tensors[k].flatten() for k in ups])
    ref = torch.cat([full_precision.lora.tensors[k].flatten() for k in ups])
    cos = float(torch.nn.functional.cosine_similarity(mine, ref, dim=0))
    assert cos > 0.75, f"the LoRA trained on {file_kind}/{weight_dtype} points elsewhere than the fp16 one ({cos:.3f})"


FLUX_CASES = [("fp16", "fp8_e4m3fn"), ("mixed_fp8", "default")]


@pytest.mark.parametrize("file_kind,weight_dtype", FLUX_CASES, ids=[f"{c[0]}-{c[1]}" for c in FLUX_CASES])
def test_flux_trains_on_quantized_base_weights(file_kind, weight_dtype, quant, host, tmp_path_factory):
    """A second family: the tiny Flux.1 model, fp8 through UNETLoader and as a mixed-precision file, against
    the same model at full precision; all of its block Linears (quantized ones) get adapters."""
    import folder_paths
    import nodes
    from kiln.devtools import family_fixtures as ff
    from kiln.devtools.quant_fixtures import host_loads_mixed_precision, write_quantized_unet_files
    if ff.available("flux1-dev"):
        pytest.skip(ff.available("flux1-dev"))
    if file_kind == "mixed_fp8" and not host_loads_mixed_precision():
        pytest.skip("this host has no quantized mixed-precision checkpoints (comfy.quant_ops)")
    assets = ff.ensure_family_assets("flux1-dev", REPO / ".cache" / "test-assets")
    _, how = ff.load_model("flux1-dev", assets.unet_name)
    if how != "UNETLoader":
        pytest.skip("this host's loader fixes Flux's widths (the tiny model is config-built, not loaded from a file)")
    folder = tmp_path_factory.mktemp("flux_quant")
    folder_paths.add_model_folder_path("diffusion_models", str(folder), is_default=True)
    files = write_quantized_unet_files(folder, ff.diffusion_model_state_dict("flux1-dev"), "kiln-tiny-flux1")
    with torch.inference_mode():
        vae = nodes.VAELoader().load_vae(assets.vae_name)[0]
    clip = ff.tiny_text_encoder("flux1-dev")
    flux = (files, clip, vae, quant[3])
    full = _bake(_load(files.fp16), flux, "qf_fp16")
    model = _load(getattr(files, file_kind), weight_dtype)
    found = _storages(model, files.quantized_layers)
    assert found and found <= {"float8_e4m3fn", "quantized"}, found
    result = _bake(model, flux, f"qf_{file_kind}_{weight_dtype}")
    assert _storages(model, files.quantized_layers) == found
    assert set(result.lora.tensors) == set(full.lora.tensors)
    losses = np.array([v for _, v in result.result.losses])
    reference = np.array([v for _, v in full.result.losses])
    assert np.isfinite(losses).all()
    np.testing.assert_allclose(losses, reference, rtol=0.05)
