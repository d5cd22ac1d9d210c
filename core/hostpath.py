"""Finding the ComfyUI install that hosts Kiln (pure path logic; the host module does the booting)."""
from __future__ import annotations

import os
from pathlib import Path


class HostNotFound(RuntimeError):
    pass


def is_comfyui_root(path: Path) -> bool:
    return (path / "comfy" / "model_management.py").is_file() and (path / "folder_paths.py").is_file()


def find_comfyui(pack_dir: str | os.PathLike, environ: dict | None = None, home: str | None = None) -> Path:
    """``$COMFYUI_PATH``, else ``$HOME/ComfyUI``, else the ComfyUI holding the pack as ``custom_nodes/<pack>``."""
    environ = os.environ if environ is None else environ
    tried = []
    explicit = environ.get("COMFYUI_PATH")
    if explicit:
        path = Path(explicit).expanduser()
        if is_comfyui_root(path):
            return path.resolve()
        # An explicit path that is wrong is an error, not a reason to guess elsewhere.
        raise HostNotFound(f"COMFYUI_PATH={explicit} is not a ComfyUI folder (no comfy/model_management.py there). "
                           "Point it at the folder that holds ComfyUI's main.py.")
    home_path = Path(home if home is not None else Path.home()) / "ComfyUI"
    tried.append(str(home_path))
    if is_comfyui_root(home_path):
        return home_path.resolve()
    pack = Path(pack_dir).resolve()
    if pack.parent.name == "custom_nodes":
        tried.append(str(pack.parent.parent))
        if is_comfyui_root(pack.parent.parent):
            return pack.parent.parent
    raise HostNotFound("ComfyUI not found (looked at $COMFYUI_PATH, " + ", ".join(tried) + "). "
                       "Set COMFYUI_PATH to your ComfyUI folder, or clone ComfyUI to ~/ComfyUI.")
