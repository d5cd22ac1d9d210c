"""Shared fixtures. Host tests use the real ComfyUI (found like the pack finds it) and skip cleanly without it."""
import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import cli  # noqa: E402

cli.load_pack()

from kiln.core.hostpath import HostNotFound, find_comfyui  # noqa: E402

try:
    HOST_ROOT = find_comfyui(REPO)
    HOST_MISSING = None
except HostNotFound as exc:
    HOST_ROOT = None
    HOST_MISSING = str(exc)


@pytest.fixture(scope="session")
def host(tmp_path_factory):
    """The booted host package (``kiln.host``) with Kiln's nodes registered in the host's node table.
    Input, output and temp folders, and first-choice checkpoints/loras folders, live in a temp dir."""
    if HOST_ROOT is None:
        pytest.skip(f"host test skipped: {HOST_MISSING}")
    from cli import runner
    from kiln.core.paths import EXTRA_ROOTS_ENV
    # The tests' own folders (pytest's temp root, the built test assets) are opted in the documented way, as an
    # owner would for a dataset outside ComfyUI's input folder; the path-policy tests clear it.
    os.environ[EXTRA_ROOTS_ENV] = os.pathsep.join([str(tmp_path_factory.getbasetemp()), str(REPO / ".cache")])
    runner.boot_host(tmp_path_factory.mktemp("kiln-host"))
    import kiln.host as h
    return h


@pytest.fixture(scope="session")
def tiny_assets(host):
    """A tiny SD1.5-family checkpoint (built once per cache dir) and the tiny captioned image set."""
    from kiln.devtools import fixtures
    return fixtures.ensure_demo_assets(REPO / ".cache" / "test-assets")



@pytest.fixture(scope="module")
def loaded(host, tiny_assets):
    """The tiny checkpoint loaded by the host's Load Checkpoint node (MODEL, CLIP, VAE) and its image set at
    64 px with 64/128 buckets: what the training host tests bake on (one load per test module)."""
    import torch
    import nodes
    from kiln.core.data import DatasetConfig, load_dataset
    with torch.inference_mode():
        model, clip, vae = nodes.CheckpointLoaderSimple().load_checkpoint(tiny_assets.checkpoint_name)[:3]
    dataset = load_dataset(DatasetConfig(path=str(tiny_assets.dataset_dir), resolution=64, min_bucket_reso=64,
                                         max_bucket_reso=128, bucket_reso_steps=64))
    return model, clip, vae, dataset


@pytest.fixture(scope="module")
def loaded_for_measuring(host, tiny_assets, tmp_path_factory):
    """The tiny checkpoint loaded outside inference mode (so a bake swaps no tensors inside a measured region)
    and a one-bucket 128 px shapes set: what the memory and placement host tests measure."""
    import nodes
    from kiln.core.data import DatasetConfig, load_dataset
    from kiln.devtools import fixtures
    root = fixtures.write_shapes_dataset(tmp_path_factory.mktemp("measured_data"), size=128)
    model, clip, vae = nodes.CheckpointLoaderSimple().load_checkpoint(tiny_assets.checkpoint_name)[:3]
    dataset = load_dataset(DatasetConfig(path=str(root), resolution=128, min_bucket_reso=128, max_bucket_reso=128,
                                         bucket_reso_steps=64))
    return model, clip, vae, dataset

# --- Host tests: marked, and required where the set-up script provided a host -------------------------------
# `pytest -m host` runs only the tests that use the real ComfyUI (kiln.sh runs them against every older host).
# With KILN_REQUIRE_HOST=1 (set by scripts/kiln.sh, so by CI) a host test skipped for want of the host or the
# browser is a failure: CI must never pass on a suite whose host half did not run.
REQUIRE_HOST = os.environ.get("KILN_REQUIRE_HOST") == "1"
_HOST_SKIPS: list[str] = []


def pytest_configure(config):
    config.addinivalue_line("markers", "host: uses the real ComfyUI host (the `host` fixture)")
    config.addinivalue_line("markers", "slow: a long cell (CI runs it; `-m 'not slow'` leaves it out of a quick run)")


def pytest_collection_modifyitems(config, items):
    for item in items:
        if "host" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.host)
    if REQUIRE_HOST and HOST_ROOT is None:
        raise pytest.UsageError(f"KILN_REQUIRE_HOST=1 but no host: {HOST_MISSING}")


def pytest_runtest_logreport(report):
    # Only "the host (or the browser) is not there" counts; a test that skips because this host version lacks a
    # feature (a 2026-only model family on the 2025 host) is a legitimate skip.
    if REQUIRE_HOST and report.skipped and "host" in report.keywords:
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        if "host test skipped" in reason or "browser test skipped" in reason:
            _HOST_SKIPS.append(f"{report.nodeid}: {reason}")


def pytest_sessionfinish(session, exitstatus):
    if _HOST_SKIPS:
        print("\nkiln: host tests were skipped while KILN_REQUIRE_HOST=1 (a failure):\n  " + "\n  ".join(_HOST_SKIPS))
        session.exitstatus = 1


def load_with_every_key(host, model, clip, path, caplog, what=""):
    """The saved file through the host's own LoraLoader: no "lora key not loaded" warning, and one patch per module
    the file holds. Returns the patched MODEL."""
    import logging
    import nodes
    import torch
    from kiln.core.lora.io import load_lora_file
    caplog.clear()
    rel = Path(path).relative_to(host.loras_dir()).as_posix()
    with caplog.at_level(logging.WARNING), torch.inference_mode():
        patched, _ = nodes.LoraLoader().load_lora(model, clip, rel, 1.0, 0.0)
    assert not [r for r in caplog.records if "lora key not loaded" in r.getMessage()], what
    modules = {k.split(".", 1)[0] for k in load_lora_file(path).tensors}
    assert len(patched.patches) == len(modules) > 0, (what, len(patched.patches), len(modules))
    return patched
