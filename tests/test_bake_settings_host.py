"""Bake settings through the real host: epochs with accumulation, validation split, keep-last saves, clip skip, VRAM presets, display names."""
import logging

import pytest
import torch


def _bake(loaded, name, cfg, spec=None, opt=None, **save):
    from kiln.core.net.spec import NetworkSpec
    from kiln.core.train.optim import OptimizerSpec
    from kiln.core.train.specs import SaveSpec
    from kiln.host.bake import bake
    model, clip, vae, dataset = loaded
    with torch.inference_mode():
        return bake(model, clip, vae, dataset, spec or NetworkSpec(rank=4, alpha=4.0),
                    opt or OptimizerSpec(lr=2e-3, scheduler="constant"), cfg,
                    SaveSpec(output_name=name, save_dtype="fp32", **save))


def test_epoch_metadata_and_plan_line_with_gradient_accumulation(loaded, caplog):
    from kiln.core.lora.io import load_lora_file
    from kiln.core.train.loop import TrainConfig
    # 10 images x 5 repeats / batch 5 = 10 batches per epoch; accumulation 5 -> 2 optimizer steps per epoch.
    cfg = TrainConfig(epochs=2, batch_size=5, grad_accum=5, seed=0, probe_samples=0, save_every_n_epochs=1)
    with caplog.at_level(logging.INFO, logger="kiln"):
        result = _bake(loaded, "accum_epochs", cfg)
    assert result.result.step == 4
    plan = [r.getMessage() for r in caplog.records if "optimizer steps" in r.getMessage()]
    assert plan and "10 batches of 5 per epoch (2 optimizer steps)" in plan[0] and plan[0].endswith("= 4 optimizer steps")
    files = sorted(result.saved_files)
    epochs = [load_lora_file(f).metadata["ss_epoch"] for f in files]
    steps = [load_lora_file(f).metadata["ss_steps"] for f in files]
    assert list(zip(steps, epochs)) == [("2", "1"), ("4", "2")]


def test_validation_images_are_never_trained_on(loaded, monkeypatch):
    from kiln.core.data.cache import LatentCache
    from kiln.core.data.dataset import KilnDataset
    from kiln.core.train.loop import TrainConfig
    splits, requested = [], []
    split = KilnDataset.split_validation

    def spy_split(self, fraction, seed=0):
        out = split(self, fraction, seed)
        splits.append(out)
        return out
    get = LatentCache.get

    def spy_get(self, dataset, refs):
        requested.append((dataset, [dataset.images[r.index].path for r in refs]))
        return get(self, dataset, refs)
    monkeypatch.setattr(KilnDataset, "split_validation", spy_split)
    monkeypatch.setattr(LatentCache, "get", spy_get)
    result = _bake(loaded, "held_out", TrainConfig(max_steps=6, seed=0, probe_samples=2, validation_split=0.3,
                                                   validation_every_n_steps=3))
    (train, val), = splits
    held = {e.path for e in val.images}
    trained = {p for ds, paths in requested if ds is train for p in paths}
    validated = {p for ds, paths in requested if ds is val for p in paths}
    assert len(held) == 3 and trained and not trained & held
    assert validated == held                       # the validation loss did read the held-out images
    assert [s for s, _ in result.result.validation] == [3, 6]


def test_keep_last_keeps_the_newest_saves_and_their_states(loaded):
    from kiln.core.train.loop import TrainConfig
    from kiln.host.bake import checkpoint_dir
    _bake(loaded, "keep2", TrainConfig(max_steps=5, seed=0, probe_samples=0, save_every_n_steps=1), keep_last=2)
    folder = checkpoint_dir("keep2")
    assert sorted(p.name for p in folder.glob("*.safetensors")) == ["keep2-000004.safetensors",
                                                                  "keep2-000005.safetensors"]
    assert sorted(p.name for p in folder.iterdir() if p.is_dir()) == ["keep2-000004-state", "keep2-000005-state"]


def test_clip_skip_set_upstream_applies_to_training(loaded, monkeypatch):
    import nodes
    from kiln.core.lora.io import load_lora_file
    from kiln.core.train.loop import TrainConfig
    from kiln.host import training
    model, clip, vae, dataset = loaded
    with torch.inference_mode():
        skipped = nodes.CLIPSetLastLayer().set_last_layer(clip, -2)[0]
    encoded = []
    encode = training.HostDiffusionModel.encode_text

    def spy(self, captions):
        out = encode(self, captions)
        encoded.append((captions[0], out[0]))
        return out
    monkeypatch.setattr(training.HostDiffusionModel, "encode_text", spy)
    cfg = TrainConfig(max_steps=2, seed=0, probe_samples=0)
    result = _bake((model, skipped, vae, dataset), "skip2", cfg)
    assert load_lora_file(result.saved_files[-1]).metadata["ss_clip_skip"] == "2"
    caption, cond = encoded[0]
    with torch.inference_mode():
        want = skipped.encode_from_tokens(skipped.tokenize(caption))
        full = clip.encode_from_tokens(clip.tokenize(caption))
    got = cond[0].to(want.dtype)   # (cond, extras) per caption
    assert (want - full).abs().max() > 1e-3                      # the two layers really differ here
    torch.testing.assert_close(got, want, rtol=1e-3, atol=1e-3)   # and training used the skipped one


def test_vram_preset_turns_gradient_checkpointing_on_in_the_train_node(loaded, monkeypatch):
    import torch.utils.checkpoint as tuc
    from kiln.nodes.train import KilnTrainLora
    calls = []
    checkpoint = tuc.checkpoint

    def spy(*args, **kwargs):
        calls.append(1)
        return checkpoint(*args, **kwargs)
    monkeypatch.setattr(tuc, "checkpoint", spy)
    model, clip, vae, dataset = loaded
    with torch.inference_mode():
        out = KilnTrainLora.execute(model, clip, vae, dataset, "vram8", 1, 1, 4, 1, 0, "fp32", False,
                                    vram_preset="8 GB", save_dtype="fp32").args
    assert calls, "the 8 GB preset did not checkpoint"
    assert out[3].steps == [1]


def test_every_node_has_a_kiln_display_name(host):
    from kiln import nodes as pack_nodes
    assert "KilnMergeLoraIntoModel" in pack_nodes.NODE_CLASS_MAPPINGS
    missing = sorted(set(pack_nodes.NODE_CLASS_MAPPINGS) - set(pack_nodes.NODE_DISPLAY_NAME_MAPPINGS))
    assert not missing, missing
    assert all(name.startswith("Kiln ") for name in pack_nodes.NODE_DISPLAY_NAME_MAPPINGS.values())


def test_block_weights_and_the_ranks_they_give_are_in_the_file_metadata(loaded):
    """A block rank weight changes the ranks the file holds: ss_network_dim is the largest rank saved and
    ss_network_args carries the weights as set and each block's rank (A1111's and kohya's readers show these)."""
    import json
    from kiln.core.lora.algorithms import rank_of
    from kiln.core.lora.io import load_lora_file
    from kiln.core.net.blocks import block_of_kohya
    from kiln.core.net.spec import NetworkSpec
    from kiln.core.train.loop import TrainConfig
    spec = NetworkSpec(rank=8, alpha=4.0, block_rank_weights=(("MID", 0.5), ("OUT11", 0.0)),
                       block_lr_weights=(("IN01", 2.0),))
    result = _bake(loaded, "block_weights_meta", TrainConfig(max_steps=1, seed=0, probe_samples=0), spec=spec)
    lora = load_lora_file(result.saved_files[-1])
    meta, modules = lora.metadata, lora.modules
    args = json.loads(meta["ss_network_args"])
    assert args["block_rank_weights"] == "MID=0.5,OUT11=0" and args["block_lr_weights"] == "IN01=2"
    saved = {}
    for module, parts in modules.items():
        saved.setdefault(block_of_kohya(module), set()).add(rank_of(parts))
    dims = dict(pair.split("=") for pair in args["block_dims"].split(","))
    assert dims == {b: "/".join(map(str, sorted(r))) for b, r in saved.items()}
    assert dims.get("MID") == "4" and "OUT11" not in dims and set(dims.values()) >= {"8"}
    assert meta["ss_network_dim"] == "8" and float(meta["ss_network_alpha"]) == 4.0
