"""User errors on the CLI print the message (naming the file and the fix) and exit with status 2."""
import subprocess
import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "kiln", *args], cwd=REPO, capture_output=True, text=True)


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


def test_python_m_kiln_from_the_pack_and_the_console_script_when_installed(tmp_path):
    """`python -m kiln` from the pack's folder; installed with pip, the `kiln` script and `python -m kiln` from any
    folder (the ComfyUI folder), with every package folder of the pack in the install."""
    r = _cli("--help")
    assert r.returncode == 0 and r.stdout.startswith("usage: kiln "), r.stderr
    target = tmp_path / "site"
    r = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                        "--target", str(target), str(REPO)], capture_output=True, text=True)
    try:
        assert r.returncode == 0, r.stderr
        shipped = {p.parent.relative_to(target / "kiln") for p in (target / "kiln").rglob("__init__.py")}
        folders = {p.parent.relative_to(REPO) for p in REPO.rglob("__init__.py")
                   if not ({"tests", "kiln", ".cache", "out", "build"} & set(p.relative_to(REPO).parts[:1]))}
        assert folders <= shipped, f"pyproject.toml's packages lack {sorted(map(str, folders - shipped))}"
        env = {"PYTHONPATH": str(target), "PATH": ""}
        r = subprocess.run([str(target / "bin" / "kiln"), "inspect", str(tmp_path / "none.safetensors")],
                           capture_output=True, text=True, env=env, cwd=tmp_path)
        assert r.returncode == 2 and "kiln inspect: error:" in r.stderr and "no such LoRA file" in r.stderr, r.stderr
        r = subprocess.run([sys.executable, "-m", "kiln", "--help"], capture_output=True, text=True, env=env,
                           cwd=tmp_path)
        assert r.returncode == 0 and "usage: kiln" in r.stdout, r.stderr
    finally:
        import shutil
        shutil.rmtree(REPO / "build", ignore_errors=True)
