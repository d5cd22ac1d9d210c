"""bench/bench_gpu.py runs end to end at tiny width on CPU: the host-built model trains through Kiln at a
VRAM preset (checkpointing on), and the native node's figures or its failure are reported beside."""
import importlib.util

import pytest

from conftest import HOST_ROOT, REPO


@pytest.fixture
def host_folders_restored(host):
    """The bench boots the host on its own scratch folders; the tests after it keep the session's."""
    import copy
    import folder_paths
    dirs = (folder_paths.get_input_directory(), folder_paths.get_output_directory(), folder_paths.get_temp_directory())
    models = copy.deepcopy(folder_paths.folder_names_and_paths)
    yield host
    folder_paths.set_input_directory(dirs[0])
    folder_paths.set_output_directory(dirs[1])
    folder_paths.set_temp_directory(dirs[2])
    folder_paths.folder_names_and_paths.clear()
    folder_paths.folder_names_and_paths.update(models)
    folder_paths.filename_list_cache.clear()


@pytest.mark.parametrize("family", ["flux1-dev", "sdxl"])
def test_bench_gpu_runs_at_tiny_width(family, host_folders_restored, capsys):
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


def test_gpu_check_script_prints_one_table_at_tiny_width(host):
    """bench/gpu_check.sh --tiny: every family x base x checkpointing row in one table, Kiln's figures in each
    (the host's figures, or why it could not run), from the script a GPU machine runs."""
    import os
    import subprocess
    import sys
    env = dict(os.environ, PYTHON=sys.executable, COMFYUI_PATH=str(HOST_ROOT))
    out = subprocess.run(["bash", str(REPO / "bench" / "gpu_check.sh"), "--tiny", "--steps", "1",
                          "--bases", "bf16", "fp8"], capture_output=True, text=True, env=env, timeout=600)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    lines = out.stdout.splitlines()
    head = next(i for i, line in enumerate(lines) if line.startswith("width "))
    table = [[c.strip() for c in line.split("|")] for line in lines[head + 1:] if line.strip()]
    keys = {(r[1], r[2], r[3]) for r in table}
    assert keys == {(f, b, c) for f in ("sdxl", "flux1-dev", "qwen-image") for b in ("bf16", "fp8")
                    for c in ("off", "on")}, keys
    for r in table:
        assert r[0] == "tiny"
        if r[4].startswith("skipped"):     # a family this host cannot build says so
            assert "this ComfyUI has no" in r[4], r
            continue
        assert float(r[4]) > 0 and float(r[5]) >= 0, r     # Kiln's steps/s and peak
        assert r[6] and (r[6] in ("n/a", "OOM") or r[6].startswith("failed") or float(r[6]) > 0), r
