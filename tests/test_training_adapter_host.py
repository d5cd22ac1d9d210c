"""The training adapter of distilled models (host/adapter.py) through the real host: merged into the base for
the run only, it changes what trains; the saved file holds none of its modules and names it in its metadata;
LoraLoader on the file gives exactly the in-graph MODEL (no adapter in either); a file that does not fit the
model is refused before any step, named; the host's partial loading trains on the patched weights too; and
the Train node runs it with a family preset through the executor."""
import logging

import numpy as np
import pytest
import torch

from test_train_host import _sample
from safetensors.torch import load_file, save_file

pytestmark = pytest.mark.host


def _adapter_modules(model):
    """Time-embedding projections of the UNet's res blocks: layers the attn_mlp network does not train, so the
    saved file can be checked for the adapter's modules by name."""
    from kiln.host.training import layer_shapes
    shapes = layer_shapes(model)
    chosen = {k: v for k, v in shapes.items() if "emb" in k and len(v) == 2 and k.startswith("lora_unet_")
              and "_input_blocks_" not in k and "_output_blocks_" not in k and "_middle_block_" not in k}
    assert chosen, "no time-embedding layer found in the tiny UNet"
    return chosen


def _write_adapter(host, model, name, scale=0.5, wrong_shape=False, unknown=0):
    gen = torch.Generator().manual_seed(3)
    tensors = {}
    for module, (out_f, in_f) in _adapter_modules(model).items():
        rank = 4
        tensors[f"{module}.lora_down.weight"] = torch.randn(rank, in_f + (3 if wrong_shape else 0), generator=gen)
        tensors[f"{module}.lora_up.weight"] = torch.randn(out_f, rank, generator=gen) * scale
        tensors[f"{module}.alpha"] = torch.tensor(float(rank))
    for i in range(unknown):
        tensors[f"lora_unet_no_such_layer_{i}.lora_down.weight"] = torch.zeros(4, 8)
        tensors[f"lora_unet_no_such_layer_{i}.lora_up.weight"] = torch.zeros(8, 4)
    path = host.loras_dir() / name
    save_file(tensors, str(path))
    return path


def _bake(setup, name, adapter=None, steps=3, on_step=None, inference=True, samples=None, **cfg):
    from kiln.core.net.spec import NetworkSpec
    from kiln.core.train.loop import TrainConfig
    from kiln.core.train.optim import OptimizerSpec
    from kiln.core.train.specs import SaveSpec, TrainingAdapterSpec
    from kiln.host.bake import bake
    model, clip, vae, dataset = setup
    spec = TrainingAdapterSpec(adapter) if adapter else None
    with torch.inference_mode(inference):
        return bake(model, clip, vae, dataset, NetworkSpec(rank=4, alpha=4.0),
                    OptimizerSpec(lr=2e-3, scheduler="constant"),
                    TrainConfig(max_steps=steps, seed=0, probe_samples=0, **cfg),
                    SaveSpec(output_name=name, save_dtype="fp32", save_state=False), samples, on_step=on_step,
                    adapter_spec=spec)


@pytest.fixture(scope="module")
def runs(loaded, host):
    model = loaded[0]
    _write_adapter(host, model, "kiln_test_adapter.safetensors")
    from kiln.core.train.sample_prompts import SamplePrompt
    from kiln.core.train.specs import SampleSpec
    # The final training-time sample, with _sample's prompt, size, seed, steps and cfg.
    samples = SampleSpec((SamplePrompt("kiln shapes, red circle", "", 64, 64, 5, 4.0, 6),), "euler", "normal")
    plain = _bake(loaded, "adapter_plain", steps=4)
    with_adapter = _bake(loaded, "adapter_on", adapter="kiln_test_adapter.safetensors", steps=4, samples=samples)
    return plain, with_adapter


def test_adapter_changes_training_and_stays_out_of_the_saved_file(runs, loaded, host):
    from kiln.host.adapter import file_hash
    plain, on = runs
    losses = [v for _, v in plain.result.losses], [v for _, v in on.result.losses]
    assert losses[0] != pytest.approx(losses[1], rel=1e-3), "the adapter changed nothing in training"
    saved = load_file(str(on.saved_files[-1]))
    adapter_modules = set(_adapter_modules(loaded[0]))
    assert not {k.partition(".")[0] for k in saved} & adapter_modules
    assert saved.keys() == load_file(str(plain.saved_files[-1])).keys() == on.lora.tensors.keys()
    diff = max(float((saved[k] - load_file(str(plain.saved_files[-1]))[k]).abs().max()) for k in saved)
    assert diff > 1e-6, "the LoRA trained on top of the adapter equals the one trained without it"
    from safetensors import safe_open
    with safe_open(str(on.saved_files[-1]), "pt") as fh:
        meta = fh.metadata()
    path = host.loras_dir() / "kiln_test_adapter.safetensors"
    assert meta["ss_training_adapter"] == "kiln_test_adapter.safetensors"
    assert meta["ss_training_adapter_hash"] == file_hash(path) and len(file_hash(path)) == 64
    assert meta["ss_training_adapter_strength"] == "1.0"
    with safe_open(str(plain.saved_files[-1]), "pt") as fh:
        assert "ss_training_adapter" not in fh.metadata()


def test_lora_loader_on_the_file_gives_the_in_graph_model_without_the_adapter(runs, loaded, host, caplog):
    import nodes
    from kiln.host.training import apply_lora
    from kiln.core.lora.io import load_lora_file
    _, on = runs
    model, clip, vae, _ = loaded
    rel = on.saved_files[-1].relative_to(host.loras_dir()).as_posix()
    with caplog.at_level(logging.WARNING), torch.inference_mode():
        lm, _ = nodes.LoraLoader().load_lora(model, clip, rel, 1.0, 0.0)
        with_adapter, _ = nodes.LoraLoader().load_lora(lm, clip, "kiln_test_adapter.safetensors", 1.0, 0.0)
    assert not [r for r in caplog.records if "lora key not loaded" in r.getMessage()]
    from_file, in_graph = _sample(lm, clip, vae), _sample(on.model, clip, vae)
    adapted, base = _sample(with_adapter, clip, vae), _sample(model, clip, vae)
    assert np.abs(in_graph - base).max() > 1e-3, "training changed nothing"
    assert np.abs(from_file - in_graph).max() == pytest.approx(0.0, abs=1e-6)
    # The adapter would show: the output is far from the base + LoRA + adapter image.
    assert np.abs(adapted - in_graph).max() > 100 * max(np.abs(from_file - in_graph).max(), 1e-6)
    # ai-toolkit's way: the training-time sample is taken without the adapter (the output MODEL's image, up to
    # the 8-bit file and bypass vs merged weights), far from the image with it.
    preview = on.samples[-1]
    assert np.abs(preview - in_graph[0]).max() < 0.02
    assert np.abs(adapted[0] - in_graph[0]).max() > 0.1
    # The in-graph patches are exactly the file's tensors (no adapter module among them).
    patched = {k for k in on.model.patches if on.model.patches[k]}
    assert patched == {k for k in lm.patches if lm.patches[k]}
    assert load_lora_file(on.saved_files[-1]).tensors.keys() == apply_lora.__globals__["KilnLora"](
        on.lora.tensors, {}).tensors.keys()


@pytest.mark.parametrize("kind", ["wrong_shape", "unknown_modules"])
def test_a_misfit_adapter_is_refused_before_any_step(loaded, host, kind):
    name = f"kiln_misfit_{kind}.safetensors"
    _write_adapter(host, loaded[0], name, wrong_shape=kind == "wrong_shape", unknown=3 if kind != "wrong_shape" else 0)
    steps = []
    with pytest.raises(ValueError) as err:
        _bake(loaded, f"misfit_{kind}", adapter=name, on_step=lambda *a: steps.append(a))
    assert name in str(err.value) and steps == []
    if kind == "unknown_modules":
        assert "3 LoRA modules have no layer" in str(err.value)
    else:
        assert "delta is" in str(err.value)


def test_a_missing_adapter_file_is_named(loaded, host):
    with pytest.raises(FileNotFoundError, match="no_such_adapter.safetensors"):
        _bake(loaded, "missing_adapter", adapter="no_such_adapter.safetensors")


def test_streamed_layers_train_on_the_patched_weights(loaded_for_measuring, host, monkeypatch):
    """With a device budget below the model, the host's partial loading keeps layers on the CPU and patches
    them per forward: the run trains the same LoRA as the fully loaded one, both on top of the adapter."""
    from kiln.devtools.native import diffusion_weight_bytes
    setup = loaded_for_measuring
    _write_adapter(host, setup[0], "kiln_stream_adapter.safetensors")
    monkeypatch.delenv("KILN_DEVICE_BUDGET_MB", raising=False)
    full = _bake(setup, "adapter_full", adapter="kiln_stream_adapter.safetensors", steps=2, inference=False,
                 batch_size=2)
    required = full.report.placement.memory_required
    plain = _bake(setup, "adapter_full_plain", steps=2, inference=False, batch_size=2)
    monkeypatch.setenv("KILN_DEVICE_BUDGET_MB", str((required + diffusion_weight_bytes(setup[0]) // 2) / 2 ** 20))
    streamed = _bake(setup, "adapter_streamed", adapter="kiln_stream_adapter.safetensors", steps=2, inference=False,
                     batch_size=2)
    assert len(streamed.report.placement.streamed) > 10
    got, want = [v for _, v in streamed.result.losses], [v for _, v in full.result.losses]
    assert got == pytest.approx(want, rel=1e-5)
    assert want != pytest.approx([v for _, v in plain.result.losses], rel=1e-4)   # the adapter did act
    for key, value in full.lora.tensors.items():
        torch.testing.assert_close(streamed.lora.tensors[key], value, rtol=1e-4, atol=1e-6, msg=key)


def test_train_node_with_adapter_and_preset_through_the_executor(host, tiny_assets, monkeypatch):
    from safetensors import safe_open
    from kiln.core.train import family_presets
    from cli import runner
    from kiln.devtools.fixtures import tiny_train_prompt
    import nodes
    model = nodes.CheckpointLoaderSimple().load_checkpoint(tiny_assets.checkpoint_name)[0]
    _write_adapter(host, model, "kiln_exec_adapter.safetensors")
    # A distinctive sd1 preset, so what it fills is visible in the saved metadata.
    monkeypatch.setitem(family_presets.FAMILY_PRESETS, "sd1",
                        family_presets.FamilyPreset(4, 2.0, 2e-3, 2, "uniform", "test"))
    prompt = tiny_train_prompt(tiny_assets.checkpoint_name, str(tiny_assets.dataset_dir), "exec_adapter", steps=0,
                               batch=1, max_bucket_reso=64)
    del prompt["net"], prompt["opt"]
    train = prompt["train"]["inputs"]
    del train["network"], train["optimizer"]
    train.update(epochs=10, max_steps=0, preset=family_presets.AUTO, training_adapter="kiln_exec_adapter.safetensors",
                 training_adapter_strength=0.5)
    result = runner.run_prompt(prompt)
    assert result.success, result.error
    with safe_open(str(host.loras_dir() / "exec_adapter.safetensors"), "pt") as fh:
        meta = fh.metadata()
    assert (meta["ss_network_dim"], meta["ss_network_alpha"], meta["ss_learning_rate"]) == ("4", "2.0", "0.002")
    assert meta["ss_steps"] == "2" and meta["ss_training_adapter"] == "kiln_exec_adapter.safetensors"
    assert meta["ss_training_adapter_strength"] == "0.5"
