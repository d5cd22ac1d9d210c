"""Kiln's command line (``python -m kiln``; ``python -m cli`` is an alias) and the one place that imports the pack under its one name, ``kiln``.

ComfyUI imports a custom-node folder under a name derived from its path, so the pack's own modules
use relative imports only. Outside ComfyUI (CLI, tests, benchmarks) we import the same folder as the
package ``kiln``.
"""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

PACK_ROOT = Path(__file__).resolve().parent.parent
PACK_NAME = "kiln"


def load_pack():
    """Import the repository root as the package ``kiln`` (idempotent) and return it."""
    if PACK_NAME in sys.modules:
        return sys.modules[PACK_NAME]
    spec = importlib.util.spec_from_file_location(
        PACK_NAME, PACK_ROOT / "__init__.py", submodule_search_locations=[str(PACK_ROOT)])
    module = importlib.util.module_from_spec(spec)
    sys.modules[PACK_NAME] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[PACK_NAME]
        raise
    return module
