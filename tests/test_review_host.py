"""The review's defects and claims checked through the real host: bake, saved metadata, LoraLoader."""
import logging

import pytest
import torch


@pytest.fixture(scope="module")
def loaded(host, tiny_assets):
    import nodes
    from kiln_pack.core.data import DatasetConfig, load_dataset
    with torch.inference_mode():
        model, clip, vae = nodes.CheckpointLoaderSimple().load_checkpoint(tiny_assets.checkpoint_name)[:3]
    dataset = load_dataset(DatasetConfig(path=str(tiny_assets.dataset_dir), resolution=64, min_bucket_reso=64,
                                         max_bucket_reso=128, bucket_reso_steps=64))
    return model, clip, vae, dataset


def _bake(loaded, name, cfg, spec=None, opt=None, **save):
    from kiln_pack.core.net.spec import NetworkSpec
    from kiln_pack.core.train.optim import OptimizerSpec
    from kiln_pack.host.bake import SaveSpec, bake
    model, clip, vae, dataset = loaded
    with torch.inference_mode():
        return bake(model, clip, vae, dataset, spec or NetworkSpec(rank=4, alpha=4.0),
                    opt or OptimizerSpec(lr=2e-3, scheduler="constant"), cfg,
                    SaveSpec(output_name=name, save_dtype="fp32", **save))


def test_epoch_metadata_and_plan_line_with_gradient_accumulation(loaded, caplog):
    from kiln_pack.core.lora.io import load_lora_file
    from kiln_pack.core.train.loop import TrainConfig
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
