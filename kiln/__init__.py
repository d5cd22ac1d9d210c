"""``python -m kiln`` from the pack's folder.

This folder is a stand-in: importing it makes ``kiln`` the pack itself (the folder above, whose modules use
relative imports because ComfyUI imports it under a name of its own), so ``kiln.core``, ``kiln.cli`` and the pack's
``__main__`` resolve there. Installed with pip, ``kiln`` is the pack directly and this folder is not shipped.
"""
from pathlib import Path

_ROOT = Path(__file__).resolve().parent.parent
__path__ = [str(_ROOT)]
__file__ = str(_ROOT / "__init__.py")
with open(__file__, encoding="utf-8") as _f:
    exec(compile(_f.read(), __file__, "exec"))
