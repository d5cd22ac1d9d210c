"""Kiln Export through the real host: the node in a graph run by the executor (family from the loaded
MODEL, paths from ComfyUI's folders, the Train node not run) and `python -m kiln export` on a shipped workflow."""
import tomllib
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.host
REPO = Path(__file__).resolve().parent.parent


def test_export_node_writes_the_train_nodes_recipe(host, tiny_assets):
    from cli import runner
    prompt = {
        "ckpt": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": tiny_assets.checkpoint_name}},
        "data": {"class_type": "KilnLoadDataset", "inputs": {"path": tiny_assets.dataset_input_name, "resolution": 64,
                                                             "caption_source": "files", "caption_extension": ".txt",
                                                             "repeats": 1}},
        "net": {"class_type": "KilnNetworkConfig", "inputs": {"algorithm": "lora", "rank": 4, "alpha": 2.0, "conv_rank": 0,
                                                              "conv_alpha": 1.0, "targets": "attn_mlp", "train_unet": True,
                                                              "train_text_encoder": False}},
        "train": {"class_type": "KilnTrainLora", "inputs": {
            "model": ["ckpt", 0], "clip": ["ckpt", 1], "vae": ["ckpt", 2], "dataset": ["data", 0], "network": ["net", 0],
            "output_name": "exported", "epochs": 3, "max_steps": 0, "batch_size": 2, "gradient_accumulation": 1,
            "seed": 5, "mixed_precision": "fp32", "gradient_checkpointing": False}},
        "export": {"class_type": "KilnExport", "inputs": {"model": ["ckpt", 0], "formats": "all", "folder": "exp",
                                                          "num_gpus": 2, "num_machines": 1, "pipeline_stages": 1}},
    }
    result = runner.run_prompt(prompt)
    assert result.success, result.error
    assert "train" not in result.outputs   # exporting does not train
    folder = host.output_dir() / "exp" / "exported"
    args = tomllib.loads((folder / "kohya_args.toml").read_text())
    # The tiny checkpoint is SD1.5-family: kohya's train_network.py, the checkpoint's full path from the host.
    assert Path(args["pretrained_model_name_or_path"]) == tiny_assets.checkpoint_path.resolve()
    assert (args["network_dim"], args["network_alpha"], args["max_train_epochs"], args["train_batch_size"]) == (4, 2.0, 3, 2)
    assert args["mixed_precision"] == "no"
    assert "train_network.py" in (folder / "HOW_TO_RUN.txt").read_text()
    ds = tomllib.loads((folder / "kohya_dataset.toml").read_text())
    (subset,) = ds["datasets"][0]["subsets"]
    assert Path(subset["image_dir"]).parent == tiny_assets.dataset_dir and subset["num_repeats"] == 5
    assert yaml.safe_load((folder / "accelerate_config.yaml").read_text())["num_processes"] == 2
    # diffusion-pipe and musubi-tuner do not train SD1.5: no files, and the guide says so.
    assert not (folder / "diffusion_pipe.toml").exists() and not (folder / "musubi_args.toml").exists()
    assert "diffusion-pipe does not train sd1" in (folder / "HOW_TO_RUN.txt").read_text()


def test_cli_export_reads_the_family_from_the_checkpoint(host, tiny_assets, tmp_path, capsys):
    from kiln.cli import main as cli
    assert cli.main(["export", str(REPO / "workflows" / "train_then_sample.json"), "--out", str(tmp_path / "x"),
                     "--formats", "kohya", "accelerate"]) == 0
    out = capsys.readouterr().out
    assert "(sd1)" in out, out
    args = tomllib.loads((tmp_path / "x" / "kohya_args.toml").read_text())
    assert args["output_name"] == "kiln_demo" and args["max_train_steps"] == 30 and args["sample_every_n_steps"] == 10
    assert (tmp_path / "x" / "kohya_prompts.txt").read_text().startswith("kiln shapes, red circle --d 7")
    with pytest.raises(SystemExit):
        cli.main(["export", str(REPO / "workflows" / "train_then_sample.json"), "--formats", "onetrainer"])
