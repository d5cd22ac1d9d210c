"""User errors on the CLI print the message (naming the file and the fix) and exit with status 2."""
import subprocess
import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "cli", *args], cwd=REPO, capture_output=True, text=True)


def test_missing_and_damaged_files_exit_2_without_a_traceback(tmp_path):
    from safetensors.torch import save_file
    r = _cli("inspect", str(tmp_path / "missing.safetensors"))
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "missing.safetensors: no such LoRA file" in r.stderr
    bad = tmp_path / "nan.safetensors"
    save_file({"lora_unet_x.lora_up.weight": torch.full((4, 2), float("nan")),
               "lora_unet_x.lora_down.weight": torch.ones(2, 4)}, str(bad))
    r = _cli("resize", str(bad), str(tmp_path / "out.safetensors"), "--value", "1")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "nan.safetensors: 1 module(s) hold NaN or infinite values (lora_unet_x)" in r.stderr
    assert not (tmp_path / "out.safetensors").exists()
