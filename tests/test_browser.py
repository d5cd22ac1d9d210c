"""The real frontend in a real browser: ComfyUI's server on loopback with Kiln installed, Debian's Chromium
driven headless by Playwright (system browser, nothing downloaded). Every shipped workflow opens with no
missing nodes; the tiny train_then_sample graph runs and the Train node's loss chart and sample appear."""
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from conftest import HOST_MISSING, HOST_ROOT, REPO

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARTIFACTS = REPO / "out" / "test-artifacts"


def _skip_reason():
    if HOST_ROOT is None:
        return f"browser test skipped: {HOST_MISSING}"
    if CHROMIUM is None:
        return "browser test skipped: Debian's chromium is not installed (apt-get install chromium)"
    try:
        import playwright  # noqa: F401
    except ImportError:
        return "browser test skipped: the playwright package is not installed"
    return None


pytestmark = pytest.mark.skipif(_skip_reason() is not None, reason=_skip_reason() or "")


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory, host, tiny_assets):
    base = tmp_path_factory.mktemp("comfy-base")
    (base / "custom_nodes").mkdir()
    (base / "custom_nodes" / "kiln").symlink_to(REPO, target_is_directory=True)
    (base / "models" / "checkpoints").mkdir(parents=True)
    shutil.copy(tiny_assets.checkpoint_path, base / "models" / "checkpoints" / tiny_assets.checkpoint_name)
    shutil.copytree(tiny_assets.dataset_dir, base / "input" / tiny_assets.dataset_input_name)
    port = _free_port()
    log = open(base / "server.log", "w")
    cmd = [sys.executable, str(HOST_ROOT / "main.py"), "--listen", "127.0.0.1", "--port", str(port),
           "--base-directory", str(base), "--disable-auto-launch", "--disable-api-nodes",
           "--database-url", "sqlite:///:memory:"]
    import torch
    if not torch.cuda.is_available():
        cmd.append("--cpu")
    proc = subprocess.Popen(cmd, cwd=str(HOST_ROOT), stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("ComfyUI exited:\n" + (base / "server.log").read_text()[-4000:])
        try:
            urllib.request.urlopen(url + "/object_info/KilnTrainLora", timeout=2).read()
            break
        except OSError:
            time.sleep(1)
    else:
        proc.kill()
        raise RuntimeError("ComfyUI did not start:\n" + (base / "server.log").read_text()[-4000:])
    yield url, base
    proc.terminate()
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.fixture(scope="module")
def page(server):
    from playwright.sync_api import sync_playwright
    url, _ = server
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=[
            "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--disable-default-apps"])
        context = browser.new_context(viewport={"width": 1600, "height": 1000})
        pg = context.new_page()
        pg.goto(url)
        pg.wait_for_function("() => window.app && window.app.graph && window.LiteGraph "
                             "&& Object.keys(window.LiteGraph.registered_node_types).length > 50", timeout=90000)
        pg.wait_for_timeout(1000)
        for _ in range(3):   # close the first-run template dialog
            pg.keyboard.press("Escape")
        yield pg
        context.close()
        browser.close()


CENTER_ON_TRAIN_NODE = """() => {
    const node = window.app.graph._nodes.find(n => n.type === 'KilnTrainLora');
    const canvas = window.app.canvas;
    canvas.ds.scale = 1.0;
    if (node && canvas.centerOnNode) canvas.centerOnNode(node);
    canvas.setDirty(true, true);
}"""

WORKFLOWS = sorted((REPO / "workflows").glob("*.json"))


@pytest.mark.parametrize("path", WORKFLOWS, ids=[p.stem for p in WORKFLOWS])
def test_workflow_opens_without_missing_nodes(page, path):
    data = json.loads(path.read_text())
    missing = page.evaluate("""async (wf) => {
        await window.app.loadGraphData(wf);
        const types = window.LiteGraph.registered_node_types;
        return window.app.graph._nodes.filter(n => !types[n.type]).map(n => n.type)
            .concat(wf.nodes.filter(n => !types[n.type]).map(n => n.type));
    }""", data)
    assert missing == [], f"{path.name}: missing nodes {missing}"


def test_train_then_sample_shows_live_loss_and_samples(page, server):
    data = json.loads((REPO / "workflows" / "train_then_sample.json").read_text())
    page.evaluate("async (wf) => { await window.app.loadGraphData(wf); await window.app.queuePrompt(0, 1); }", data)
    page.wait_for_function("() => [...document.querySelectorAll('canvas.kiln-loss-chart')]"
                           ".some(c => Number(c.dataset.points || 0) > 0)", timeout=240000)
    page.wait_for_selector("img.kiln-sample", state="attached", timeout=240000)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for _ in range(3):   # the first-run template dialog would cover the graph
        page.keyboard.press("Escape")
    page.evaluate(CENTER_ON_TRAIN_NODE)
    page.wait_for_timeout(500)
    page.screenshot(path=str(ARTIFACTS / "train_then_sample.png"))
    points = page.evaluate("() => Math.max(...[...document.querySelectorAll('canvas.kiln-loss-chart')]"
                           ".map(c => Number(c.dataset.points || 0)))")
    assert points > 0
    history = json.loads(urllib.request.urlopen(server[0] + "/kiln/history", timeout=5).read())
    assert any(h["points"] for h in history.values())
    # A reloaded page redraws the chart from the server's history (the same path a mid-run reload takes).
    page.reload()
    page.wait_for_function("() => window.app && window.app.graph && window.LiteGraph "
                           "&& Object.keys(window.LiteGraph.registered_node_types).length > 50", timeout=90000)
    page.evaluate("async (wf) => { await window.app.loadGraphData(wf); }", data)
    page.wait_for_function("() => [...document.querySelectorAll('canvas.kiln-loss-chart')]"
                           ".some(c => Number(c.dataset.points || 0) >= 30)", timeout=30000)
