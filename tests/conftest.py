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
def host():
    """The booted host module (``kiln_pack.host``) with Kiln's nodes registered in the host's node table."""
    if HOST_ROOT is None:
        pytest.skip(f"host test skipped: {HOST_MISSING}")
    from kiln_pack.host import runner
    runner.boot_host()
    import kiln_pack.host as h
    return h


@pytest.fixture(scope="session")
def tiny_assets(host, tmp_path_factory):
    """A tiny SD1.5-family checkpoint in the host's checkpoints folder and a tiny captioned image set."""
    from kiln_pack.host import fixtures
    cache = Path(tmp_path_factory.getbasetemp()) / "kiln-assets"
    return fixtures.ensure_demo_assets(host.model_folder_paths("checkpoints")[0], cache)
