"""bench/bench_gpu.py runs end to end at tiny width on CPU: the host-built model trains through Kiln at a
VRAM preset (checkpointing on), and the native node's figures or its failure are reported beside."""
import importlib.util

import pytest

from conftest import REPO


@pytest.mark.parametrize("family", ["flux1-dev", "sdxl"])
def test_bench_gpu_runs_at_tiny_width(family, host, capsys):
    spec = importlib.util.spec_from_file_location("bench_gpu", REPO / "bench" / "bench_gpu.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    rows = bench.main(["--tiny", "--steps", "1", "--families", family, "--bases", "bf16", "--presets", "8 GB"])
    out = capsys.readouterr().out
    row = rows[family, "bf16", "8 GB"]
    assert row["batch"] == 1 and row["ckpt"] is True
    steps_per_s, peak, error = row["kiln"]
    assert not error and steps_per_s > 0 and peak > 0
    assert f"{family} bf16 8 GB (batch 1, checkpointing True): kiln " in out
    assert row["native"][2] or row["native"][0] > 0   # figures, or the reason it could not run
