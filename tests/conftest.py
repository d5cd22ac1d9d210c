"""Shared fixtures. Host tests use the real ComfyUI (found like the pack finds it) and skip cleanly without it."""
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import kiln  # noqa: E402

kiln.load_pack()

from kiln_pack.core.hostpath import HostNotFound, find_comfyui  # noqa: E402

try:
    HOST_ROOT = find_comfyui(REPO)
    HOST_MISSING = None
except HostNotFound as exc:
    HOST_ROOT = None
    HOST_MISSING = str(exc)


@pytest.fixture(scope="session")
def host(tmp_path_factory):
    """The booted host package (``kiln_pack.host``) with Kiln's nodes registered in the host's node table.
    Input, output and temp folders, and first-choice checkpoints/loras folders, live in a temp dir."""
    if HOST_ROOT is None:
        pytest.skip(f"host test skipped: {HOST_MISSING}")
    from kiln_pack.host import runner
    runner.boot_host(tmp_path_factory.mktemp("kiln-host"))
    import kiln_pack.host as h
    return h


@pytest.fixture(scope="session")
def tiny_assets(host):
    """A tiny SD1.5-family checkpoint (built once per cache dir) and the tiny captioned image set."""
    from kiln_pack.host import fixtures
    return fixtures.ensure_demo_assets(REPO / ".cache" / "test-assets")
