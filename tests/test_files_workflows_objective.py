"""Host-free tests of the ground floor: LoRA files, host discovery, workflow conversion, objective, plots."""
import json
import math
import os
import subprocess
import sys

import pytest
import torch
from safetensors.torch import save_file

from conftest import REPO
from kiln.core.hostpath import HostNotFound, find_comfyui
from kiln.core.lora.io import load_lora_file, save_lora, safetensors_tensor_hashes
from kiln.core.lora.value import KilnLora
from kiln.core.train.objective import ObjectiveSpec, batch_loss, residual_scale, snr_weight
from kiln.core.plots.loss_chart import loss_plot
from kiln.core.train.sample_prompts import SamplePrompt, parse_prompts
from kiln.core.workflow import WorkflowError, ui_to_api


def _lora():
    return KilnLora({"lora_unet_a.lora_down.weight": torch.randn(4, 8), "lora_unet_a.lora_up.weight": torch.randn(8, 4),
                     "lora_unet_a.alpha": torch.tensor(2.0)}, {"ss_network_dim": 4, "user_note": "x"})


def test_lora_save_load_roundtrip_with_kohya_hashes(tmp_path):
    lora = _lora()
    path = save_lora(lora, tmp_path / "a.safetensors")
    back = load_lora_file(path)
    assert set(back.tensors) == set(lora.tensors)
    assert torch.equal(back.tensors["lora_unet_a.lora_up.weight"], lora.tensors["lora_unet_a.lora_up.weight"])
    assert back.metadata["ss_network_dim"] == "4"
    # sshs_model_hash covers tensor bytes only: adding user metadata does not change it
    again = save_lora(lora.with_metadata(user_note="changed"), tmp_path / "b.safetensors")
    assert load_lora_file(again).metadata["sshs_model_hash"] == back.metadata["sshs_model_hash"]
    assert not list(tmp_path.glob(".*.tmp"))  # no temp files left behind


def test_hash_matches_the_tensor_section(tmp_path):
    p = tmp_path / "x.safetensors"
    save_file({"w": torch.ones(3)}, str(p))
    blob = p.read_bytes()
    n = int.from_bytes(blob[:8], "little")
    import hashlib
    assert safetensors_tensor_hashes(blob)[0] == hashlib.sha256(blob[8 + n:]).hexdigest()


def test_lora_value_is_immutable_and_groups_modules():
    lora = _lora()
    with pytest.raises(TypeError):
        lora.tensors["x"] = torch.zeros(1)
    assert set(lora.modules["lora_unet_a"]) == {"lora_down.weight", "lora_up.weight", "alpha"}


def test_refuses_pickles_and_names_the_file(tmp_path):
    p = tmp_path / "old.pt"
    p.write_bytes(b"not really")
    with pytest.raises(ValueError, match="old.pt"):
        load_lora_file(p)
    bad = tmp_path / "broken.safetensors"
    bad.write_bytes(b"\x00" * 20)
    with pytest.raises(ValueError, match="broken.safetensors"):
        load_lora_file(bad)
    with pytest.raises(ValueError, match="safetensors"):
        save_lora(_lora(), tmp_path / "x.ckpt")


def test_find_comfyui_order(tmp_path):
    def make(root):
        (root / "comfy").mkdir(parents=True)
        (root / "comfy" / "model_management.py").write_text("")
        (root / "folder_paths.py").write_text("")
        return root
    explicit = make(tmp_path / "explicit")
    home = tmp_path / "home"
    make(home / "ComfyUI")
    pack = make(tmp_path / "outer") / "custom_nodes" / "kiln"
    pack.mkdir(parents=True)
    assert find_comfyui(pack, {"COMFYUI_PATH": str(explicit)}, str(home)) == explicit.resolve()
    assert find_comfyui(pack, {}, str(home)) == (home / "ComfyUI").resolve()
    assert find_comfyui(pack, {}, str(tmp_path / "nohome")) == (tmp_path / "outer").resolve()
    with pytest.raises(HostNotFound, match="COMFYUI_PATH"):
        find_comfyui(pack, {"COMFYUI_PATH": str(tmp_path / "nothing")}, str(home))
    with pytest.raises(HostNotFound, match="~/ComfyUI"):
        find_comfyui(tmp_path, {}, str(tmp_path / "nohome"))


TYPES = {
    "Loader": {"required": {"ckpt_name": (["a.safetensors", "b.safetensors"],)}},
    "Sampler": {"required": {"model": ("MODEL",), "seed": ("INT", {"default": 0}), "steps": ("INT", {"default": 20}),
                             "cfg": ("FLOAT", {"default": 7.0})},
                "optional": {"note": ("STRING", {"default": ""})}},
    "Save": {"required": {"images": ("IMAGE",), "filename_prefix": ("STRING", {"default": "x"})}},
}


def test_ui_to_api_widgets_links_reroutes_bypass():
    wf = {"nodes": [
        {"id": 1, "type": "Loader", "widgets_values": ["b.safetensors"], "outputs": [{"type": "MODEL"}]},
        {"id": 2, "type": "Reroute", "inputs": [{"name": "", "link": 1}], "outputs": [{"type": "MODEL"}]},
        {"id": 3, "type": "Sampler", "widgets_values": [42, "randomize", 12, 5.5, "hi"],
         "inputs": [{"name": "model", "type": "MODEL", "link": 2}], "outputs": [{"type": "MODEL"}]},
        {"id": 4, "type": "Sampler", "mode": 4, "widgets_values": [1, "fixed", 1, 1.0, ""],
         "inputs": [{"name": "model", "type": "MODEL", "link": 3}], "outputs": [{"type": "MODEL"}]},
        {"id": 5, "type": "Save", "widgets_values": ["out"], "inputs": [{"name": "images", "link": 4}]},
        {"id": 6, "type": "Note", "widgets_values": ["just a note"]},
    ], "links": [[1, 1, 0, 2, 0, "MODEL"], [2, 2, 0, 3, 0, "MODEL"], [3, 3, 0, 4, 0, "MODEL"], [4, 4, 0, 5, 0, "IMAGE"]]}
    api = ui_to_api(wf, TYPES.get)
    assert set(api) == {"1", "3", "5"}
    assert api["1"]["inputs"] == {"ckpt_name": "b.safetensors"}
    assert api["3"]["inputs"] == {"seed": 42, "steps": 12, "cfg": 5.5, "note": "hi", "model": ["1", 0]}
    assert api["5"]["inputs"]["images"] == ["3", 0]   # through the bypassed sampler
    wf["nodes"].append({"id": 9, "type": "Missing", "widgets_values": []})
    with pytest.raises(WorkflowError, match="Missing"):
        ui_to_api(wf, TYPES.get)


def test_shipped_workflows_are_ui_format():
    files = sorted((REPO / "workflows").glob("*.json"))
    assert files, "no shipped workflows"
    for f in files:
        data = json.loads(f.read_text())
        assert "nodes" in data and "links" in data, f
        assert all(n["type"].startswith("Kiln") or n["type"][0].isupper() for n in data["nodes"])


@pytest.mark.parametrize("kind", ["eps", "v", "flow"])
def test_residual_scale_matches_each_family_target(kind):
    """x0 residual times the scale equals the residual of the family's own target (eps / v / velocity)."""
    g = torch.Generator().manual_seed(0)
    x0, noise, wrong = (torch.randn(3, 4, 2, 2, generator=g) for _ in range(3))
    sigma = torch.tensor([0.3, 1.0, 0.8])
    s = sigma.view(-1, 1, 1, 1)
    if kind == "eps":
        x_t = x0 + s * noise
        eps_hat = noise + wrong
        x0_hat = x_t - s * eps_hat
        native = eps_hat - noise
    elif kind == "flow":
        x_t = (1 - s) * x0 + s * noise
        v_hat = (noise - x0) + wrong
        x0_hat = x_t - s * v_hat
        native = v_hat - (noise - x0)
    else:
        x_t = x0 + s * noise
        c_skip, c_out = 1 / (s ** 2 + 1), -s / torch.sqrt(s ** 2 + 1)
        c_in = 1 / torch.sqrt(s ** 2 + 1)
        v_true = (x_t * c_skip - x0) / (-c_out)
        v_hat = v_true + wrong
        x0_hat = x_t * c_skip + c_out * v_hat
        native = v_hat - v_true
    got = (x0_hat - x0) * residual_scale(kind, sigma).view(-1, 1, 1, 1)
    # Exactly the native residual with its sign flipped (x0_hat - x0 against target_hat - target): the
    # losses are symmetric, so the sign never matters, but the values are pinned element by element.
    torch.testing.assert_close(got, -native, rtol=1e-5, atol=1e-5)


def test_min_snr_and_loss_types():
    sigma = torch.tensor([0.1, 1.0, 10.0])
    w = snr_weight(ObjectiveSpec(min_snr_gamma=5.0), "eps", sigma)
    snr = 1 / sigma ** 2
    torch.testing.assert_close(w, torch.minimum(snr, torch.tensor(5.0)) / snr)
    x0 = torch.zeros(3, 1, 2, 2)
    x0_hat = torch.ones(3, 1, 2, 2)
    l2 = batch_loss(ObjectiveSpec(loss="l2"), "x0", x0_hat, x0, sigma)
    l1 = batch_loss(ObjectiveSpec(loss="l1"), "x0", 3 * x0_hat, x0, sigma)
    assert math.isclose(float(l2), 1.0) and math.isclose(float(l1), 3.0)
    huber = batch_loss(ObjectiveSpec(loss="huber", huber_c=0.1), "x0", 3 * x0_hat, x0, sigma)
    # kohya's pseudo-Huber 2c (sqrt(r^2 + c^2) - c) at r = 3, c = 0.1
    assert float(huber) == pytest.approx(0.2 * (math.sqrt(9.01) - 0.1), rel=1e-6)
    small = batch_loss(ObjectiveSpec(loss="huber", huber_c=1.0), "x0", 0.01 * x0_hat, x0, sigma)
    assert float(small) == pytest.approx(2 * (math.sqrt(1.0001) - 1), rel=5e-3)   # ~ r^2 near 0 (float32 cancellation)
    smooth = batch_loss(ObjectiveSpec(loss="smooth_l1", huber_c=0.1), "x0", 3 * x0_hat, x0, sigma)
    assert float(smooth) == pytest.approx(3 - 0.05, rel=1e-6)   # |r| - beta / 2 beyond beta


def test_kohya_sample_prompt_lines():
    d = SamplePrompt(prompt="", width=512, height=512, seed=1, cfg=7.0, steps=20)
    ps = parse_prompts("# comment\nmasterpiece, 1girl --n lowres, bad --w 768 --h 512 --d 42 --l 5.5 --s 28\nplain", d)
    assert ps[0] == SamplePrompt("masterpiece, 1girl", "lowres, bad", 768, 512, 42, 5.5, 28)
    assert ps[1].prompt == "plain" and ps[1].steps == 20
    with pytest.raises(ValueError, match="--w"):
        parse_prompts("x --w wide", d)


def test_loss_plot_draws_something():
    img = loss_plot([(i, 1.0 / (i + 1)) for i in range(1, 50)])
    assert img.shape == (360, 640, 3) and img.min() < 0.5 < img.max()


def test_requirements_never_pin_torch_or_numpy():
    import tomllib
    reqs = [l.split("#")[0].strip() for l in (REPO / "requirements.txt").read_text().splitlines()]
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    for line in [r for r in reqs if r] + deps:
        name = line.split(";")[0]
        for pkg in ("torch", "torchvision", "numpy"):
            if name.lower().replace(" ", "").startswith(pkg):
                assert name.strip().lower() == pkg, f"{line!r} pins or caps {pkg}"


def test_installing_requirements_never_changes_torch_torchvision_or_numpy(tmp_path):
    """pip's own resolver, in this (host) environment: installing Kiln's requirements would change none of them."""
    report = tmp_path / "report.json"
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run", "--quiet", "--report", str(report),
                           "-r", str(REPO / "requirements.txt")], capture_output=True, text=True, timeout=300)
    if proc.returncode != 0 and ("Could not fetch" in proc.stderr or "NewConnectionError" in proc.stderr):
        pytest.skip("pip could not reach the package index: " + proc.stderr.strip().splitlines()[-1])
    assert proc.returncode == 0, proc.stderr
    would_install = {item["metadata"]["name"].lower() for item in json.loads(report.read_text())["install"]}
    assert not would_install & {"torch", "torchvision", "numpy"}, would_install
