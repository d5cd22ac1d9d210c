"""Nothing lost: long output names, a full disk at the final save, two runs of one name, and temp files
left by a killed write, through the real host's loader and training path."""
import errno
import logging
import os

import pytest
import torch


@pytest.fixture(scope="module")
def loaded(host, tiny_assets):
    import nodes
    from kiln.core.data import DatasetConfig, load_dataset
    with torch.inference_mode():
        model, clip, vae = nodes.CheckpointLoaderSimple().load_checkpoint(tiny_assets.checkpoint_name)[:3]
    dataset = load_dataset(DatasetConfig(path=str(tiny_assets.dataset_dir), resolution=64, min_bucket_reso=64,
                                         max_bucket_reso=64, bucket_reso_steps=64))
    return model, clip, vae, dataset


def _bake(loaded, name, steps=2, seed=0, **save):
    from kiln.core.net.spec import NetworkSpec
    from kiln.core.train.loop import TrainConfig
    from kiln.core.train.optim import OptimizerSpec
    from kiln.core.train.specs import SaveSpec
    from kiln.host.bake import bake
    model, clip, vae, dataset = loaded
    with torch.inference_mode():
        return bake(model, clip, vae, dataset, NetworkSpec(rank=2, alpha=2.0, targets="attn"),
                    OptimizerSpec(lr=2e-3, scheduler="constant"),
                    TrainConfig(max_steps=steps, seed=seed, probe_samples=0, save_every_n_steps=save.pop("every", 0)),
                    SaveSpec(output_name=name, save_dtype="fp32", **save))


@pytest.mark.parametrize("name", ["n" * 250, "猫" * 90, "x" * 235])
def test_long_output_names_are_shortened_and_saved(loaded, name, caplog):
    from kiln.core.lora.io import load_lora_file
    with caplog.at_level(logging.WARNING, logger="kiln"):
        result = _bake(loaded, name)
    path = result.saved_files[-1]
    assert path.is_file() and len(path.name.encode()) < 200
    assert len((path.parent / (path.stem + "-state")).name.encode()) < 200
    assert load_lora_file(path).metadata["ss_output_name"] == name
    assert any("files are named" in r.getMessage() for r in caplog.records)


def test_full_disk_at_the_final_save_still_outputs_the_lora_and_keeps_the_last_good_save(loaded, caplog, monkeypatch):
    import comfy.lora
    from kiln.host.bake import checkpoint_dir
    real_fsync = os.fsync

    def full_disk_for_step_4(fd):
        # The disk fills up while the final save (step 4) is written: its temp file cannot be flushed.
        if "-000004" in os.readlink(f"/proc/self/fd/{fd}"):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_fsync(fd)
    monkeypatch.setattr(os, "fsync", full_disk_for_step_4)
    with caplog.at_level(logging.ERROR, logger="kiln"):
        result = _bake(loaded, "fulldisk", steps=4, every=2)
    folder = checkpoint_dir("fulldisk")
    good = folder / "fulldisk-000002.safetensors"
    assert result.saved_files == [good] and good.is_file() and (folder / "fulldisk-000002-state" / "state.json").is_file()
    assert sorted(p.name for p in folder.iterdir()) == ["fulldisk-000002-state", "fulldisk-000002.safetensors"]
    assert len(result.save_errors) == 1 and str(folder / "fulldisk-000004.safetensors") in result.save_errors[0]
    assert "No space left on device" in result.save_errors[0] and str(good) in result.save_errors[0]
    assert any("still output" in r.getMessage() for r in caplog.records)
    # The trained LoRA (step 4) is still the node's output and is applied to the output MODEL.
    assert result.lora.metadata["ss_steps"] == "4"
    ups = [v for k, v in result.lora.tensors.items() if k.endswith("lora_up.weight")]
    assert ups and all(float(u.abs().max()) > 0 for u in ups)
    assert result.model.patches and len(result.model.patches) == len(ups)
    assert isinstance(comfy.lora.load_lora(result.lora.tensors, comfy.lora.model_lora_keys_unet(result.model.model, {})), dict)


def test_a_second_run_of_the_same_name_keeps_the_first_runs_saves(loaded, caplog):
    from kiln.host.bake import checkpoint_dir
    first = _bake(loaded, "samename", seed=1)
    path = first.saved_files[-1]
    before = {p.relative_to(path.parent): p.read_bytes() for p in path.parent.rglob("*") if p.is_file()}
    with caplog.at_level(logging.WARNING, logger="kiln"):
        second = _bake(loaded, "samename", seed=2)
    after = {p.relative_to(path.parent): p.read_bytes() for p in path.parent.rglob("*") if p.is_file()}
    assert after == before and len(before) >= 4
    assert second.saved_files[-1].parent == checkpoint_dir("samename").with_name("samename_run2")
    assert any("are kept" in r.getMessage() for r in caplog.records)
    # kohya's ss_sd_model_name (the checkpoint's file name) where the host records the file; modelspec too.
    recorded = getattr(loaded[0], "cached_patcher_init", None)
    assert first.lora.metadata["ss_sd_model_name"] == ("kiln-tiny-sd15.safetensors" if recorded else "")
    assert first.lora.metadata["modelspec.architecture"] == "stable-diffusion-v1/lora"
    assert first.lora.metadata["modelspec.title"] == "samename"
    # Resuming the first run's state continues in its own folder.
    third = _bake(loaded, "samename", steps=3, resume_from=str(path.with_name(path.stem + "-state")))
    assert third.saved_files[-1] == path.with_name("samename-000003.safetensors")


def test_temp_files_left_by_a_killed_write_are_removed_at_the_next_run(loaded):
    from kiln.host.bake import checkpoint_dir
    folder = checkpoint_dir("killed")
    (folder / "killed-000002-state").mkdir(parents=True)
    stale = [folder / ".killed-000002.safetensors.k3j_9xq2.tmp", folder / "killed-000002-state" / ".network.kilnstate.ab12cd34.tmp"]
    for p in stale:
        p.write_bytes(b"half a file")
    mine = folder / "notes.tmp"
    mine.write_text("not Kiln's")
    _bake(loaded, "killed")
    assert not any(p.exists() for p in stale) and mine.is_file()


def test_a_second_run_of_the_same_name_keeps_its_samples_apart(loaded):
    from kiln.core.net.spec import NetworkSpec
    from kiln.core.train.loop import TrainConfig
    from kiln.core.train.optim import OptimizerSpec
    from kiln.core.train.sample_prompts import SamplePrompt
    from kiln.core.train.specs import SampleSpec, SaveSpec
    from kiln.host.bake import bake
    model, clip, vae, dataset = loaded
    prompts = SampleSpec((SamplePrompt("kiln shapes, red circle", width=64, height=64, steps=2, cfg=1.0),))

    def run(seed):
        with torch.inference_mode():
            return bake(model, clip, vae, dataset, NetworkSpec(rank=2, alpha=2.0, targets="attn"),
                        OptimizerSpec(lr=2e-2, scheduler="constant"),
                        TrainConfig(max_steps=2, seed=seed, probe_samples=0),
                        SaveSpec(output_name="sampled", save_dtype="fp32"), prompts)
    first = run(1)
    kept = {p: p.read_bytes() for p in first.sample_files}
    second = run(2)
    assert kept and second.sample_files
    # Each run's samples sit in a folder named like its save folder, and the first run's stay as they were.
    assert {p.parent.name for p in first.sample_files} == {first.saved_files[-1].parent.name} == {"sampled"}
    assert {p.parent.name for p in second.sample_files} == {second.saved_files[-1].parent.name} == {"sampled_run2"}
    assert all(p.read_bytes() == b for p, b in kept.items())


@pytest.mark.parametrize("name", ["n" * 250, "猫" * 90, "sub/" + "x" * 240])
def test_save_lora_node_caps_long_file_names(loaded, host, name, caplog):
    import nodes
    from kiln.core.lora.io import MAX_STEM_BYTES, load_lora_file
    result = _bake(loaded, "tosave")
    save_node = nodes.NODE_CLASS_MAPPINGS["KilnSaveLora"]
    with caplog.at_level(logging.WARNING, logger="kiln"):
        if hasattr(save_node, "FUNCTION"):
            out = getattr(save_node(), save_node.FUNCTION)(lora=result.lora, filename=name, overwrite=True)
        else:   # V3 node
            out = save_node.execute(lora=result.lora, filename=name, overwrite=True)
    saved = out["result"][0] if isinstance(out, dict) else out.result[0]
    path = host.loras_dir() / saved
    assert path.is_file() and all(len(part.encode()) <= MAX_STEM_BYTES + len(".safetensors")
                                  for part in path.relative_to(host.loras_dir()).parts)
    assert load_lora_file(path).tensors.keys() == result.lora.tensors.keys()
    assert any("longer than" in r.getMessage() for r in caplog.records)
    with torch.inference_mode():   # LoraLoader finds it by the name the node returned
        nodes.LoraLoader().load_lora(loaded[0], loaded[1], saved, 1.0, 1.0)
