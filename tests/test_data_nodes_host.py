"""The dataset nodes through the real host executor: a relative folder read from the input dir, the preview's
summary and grid, a broken folder failing with the clear message, a re-run when the files change."""
import shutil

import numpy as np
import pytest
import torch
from PIL import Image


def _prompt(path, **load):
    # buckets at 128 / 64..256 / 64: 128x128, 192x64, 64x192, 256x64, 64x256
    inputs = {"path": path, "resolution": 128, "caption_source": "files", "caption_extension": ".txt", "repeats": 1,
              "min_bucket_reso": 64, "max_bucket_reso": 256, "bucket_reso_steps": 64, **load}
    return {"1": {"class_type": "KilnLoadDataset", "inputs": inputs},
            "2": {"class_type": "KilnDatasetPreview",
                  "inputs": {"dataset": ["1", 0], "per_bucket": 2, "batch_size": 2, "epochs": 3}}}


@pytest.fixture
def input_folder(host):
    root = host.input_dir() / "kiln_test_dataset"
    shutil.rmtree(root, ignore_errors=True)
    d = root / "5_zyx"
    d.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i, size in enumerate([(64, 64), (64, 64), (192, 64)]):
        Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(d / f"{i}.png")
        (d / f"{i}.txt").write_text(f"zyx, tag{i}")
    yield root
    shutil.rmtree(root, ignore_errors=True)


def test_load_and_preview_through_the_executor(host, input_folder):
    from cli import runner
    result = runner.run_prompt(_prompt("kiln_test_dataset"))
    assert result.success, result.error
    summary = result.outputs["2"]["text"][0]
    # 2 images in 128x128 (x5 repeats = 10 -> 5 steps at batch 2) + 1 in 192x64 (5 -> 3 steps) = 8 per epoch
    assert "3 training images" in summary and "5_zyx: 3 images x 5 repeats" in summary
    assert "8 steps per epoch x 3 epochs = 24 steps" in summary
    assert "128x128: 10" in summary and "192x64: 5" in summary and "zyx (3)" in summary


def test_preview_grid_and_background_input(host, input_folder):
    from kiln.nodes.dataset import KilnDatasetPreview, KilnLoadDataset
    Image.new("RGBA", (64, 64), (0, 0, 0, 0)).save(input_folder / "5_zyx" / "clear.png")
    with torch.inference_mode():
        (ds,) = KilnLoadDataset.execute("kiln_test_dataset", 128, "files", ".txt", 1, min_bucket_reso=64,
                                         max_bucket_reso=256, bucket_reso_steps=64, background="#00ff00")
        out = KilnDatasetPreview.execute(ds, 2, 1, 1).args
    clear = [b[0] for b in ds.epoch_plan(0, 1, 0) if ds.images[b[0].index].path.name == "clear.png"][0]
    assert torch.allclose(ds.load_pixels(clear)[0, 0], torch.tensor([0.0, 1.0, 0.0]))
    grid, summary = out
    assert grid.ndim == 4 and grid.shape[0] == 1 and grid.shape[-1] == 3 and grid.dtype == torch.float32
    assert grid.shape[2] == 2 * 192 and grid.shape[1] > 2 * 192        # two buckets -> two rows with captions
    assert float(grid.std()) > 0.05 and "4 training images" in summary


def test_broken_folder_fails_before_training_with_the_fix(host, tmp_path):
    from cli import runner
    (tmp_path / "mychar").mkdir()
    Image.new("RGB", (64, 64)).save(tmp_path / "mychar" / "a.png")
    result = runner.run_prompt(_prompt(str(tmp_path)))
    assert not result.success
    assert "N_name" in str(result.error) and "10_mychar" in str(result.error)


def test_changed_files_rerun_the_node(host, input_folder):
    from kiln.nodes.dataset import KilnLoadDataset
    before = KilnLoadDataset.fingerprint_inputs(path="kiln_test_dataset")
    assert KilnLoadDataset.fingerprint_inputs(path="kiln_test_dataset") == before
    (input_folder / "5_zyx" / "0.txt").write_text("zyx, edited caption")
    assert KilnLoadDataset.fingerprint_inputs(path="kiln_test_dataset") != before
