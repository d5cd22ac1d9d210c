"""The one package that imports ComfyUI (``comfy``, ``folder_paths``, ``nodes``, ``execution``, ``server``).

Importing it finds and starts the host when Kiln runs outside ComfyUI (CLI, tests); inside ComfyUI the
host is already up and this is a no-op. Everything else in the pack reaches the host through here.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

from ..core.hostpath import HostNotFound, find_comfyui

PACK_DIR = Path(__file__).resolve().parent.parent


def _one_gpu_per_rank() -> None:
    """Under torchrun each rank drives the GPU of its local rank, made the only one it sees (what the host's
    --cuda-device does), so the host's cuda:0 is that GPU. Set before CUDA starts; a list the user gave in
    CUDA_VISIBLE_DEVICES is indexed by the local rank."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or "LOCAL_RANK" not in os.environ:
        return
    local = int(os.environ["LOCAL_RANK"])
    visible = [d for d in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if d.strip()]
    if "CUDA_VISIBLE_DEVICES" in os.environ and len(visible) <= 1:
        return   # already one (or no) GPU per process
    os.environ["CUDA_VISIBLE_DEVICES"] = visible[local] if local < len(visible) else str(local)


def _boot() -> Path:
    if "folder_paths" in sys.modules and "comfy.model_management" in sys.modules:
        return Path(sys.modules["folder_paths"].__file__).resolve().parent
    root = find_comfyui(PACK_DIR)
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    # The host's nodes.py puts comfy/ first on sys.path, where comfy/utils.py would then shadow the
    # top-level utils package the server needs; main.py avoids that by importing it first, and so do we.
    import utils.install_util  # noqa: F401
    import torch
    import comfy.options
    comfy.options.enable_args_parsing(False)
    from comfy.cli_args import args
    _one_gpu_per_rank()
    # A CUDA build of torch on a machine without a GPU must be told before model_management loads.
    if not torch.cuda.is_available():
        args.cpu = True
    return root


COMFYUI_ROOT = _boot()

import comfy.model_management as model_management  # noqa: E402
import comfy.utils  # noqa: E402
import folder_paths  # noqa: E402


def progress_bar(total: int):
    """The host's ProgressBar (shows in the UI on the running node)."""
    return comfy.utils.ProgressBar(total)


def throw_if_interrupted() -> None:
    """Raise the host's interrupt exception when the user pressed Cancel."""
    model_management.throw_exception_if_processing_interrupted()


def image_batch(array):
    """An [H, W, 3] float array as the host's IMAGE: a [1, H, W, 3] tensor."""
    import torch
    return torch.from_numpy(array)[None]


def interrupt_exception_type():
    return model_management.InterruptProcessingException


def register_model_folder(key: str, default_subdir: str, extensions: set[str]) -> Path:
    """Register ``models/<default_subdir>`` under ``key`` unless another pack already did; returns the first path."""
    default = Path(folder_paths.models_dir) / default_subdir
    if key in folder_paths.folder_names_and_paths:
        paths, exts = folder_paths.folder_names_and_paths[key]
        if str(default) not in paths:
            paths.append(str(default))
        exts.update(extensions)
        return Path(paths[0])
    folder_paths.folder_names_and_paths[key] = ([str(default)], set(extensions))
    return default


def model_folder_paths(key: str) -> list[Path]:
    return [Path(p) for p in folder_paths.get_folder_paths(key)]


def output_dir() -> Path:
    return Path(folder_paths.get_output_directory())


def input_dir() -> Path:
    return Path(folder_paths.get_input_directory())


def resolve_input_path(path: str, what: str = "folder") -> str:
    """The real path of a folder input, read from ComfyUI's input folder ('' stays ''); a path outside it and the
    owner's KILN_EXTRA_ROOTS is refused (core.paths)."""
    from ..core.paths import confine
    path = path.strip()
    if not path:
        return ""
    return str(confine(path, input_dir(), what=what))


def temp_dir() -> Path:
    return Path(folder_paths.get_temp_directory())


def loras_dir() -> Path:
    return Path(folder_paths.get_folder_paths("loras")[0])


def sampler_names() -> list[str]:
    import comfy.samplers
    return list(comfy.samplers.KSampler.SAMPLERS)


def scheduler_names() -> list[str]:
    import comfy.samplers
    return list(comfy.samplers.KSampler.SCHEDULERS)


# Inside a running ComfyUI server, expose the live training history (GET /kiln/history).
from . import live as _live  # noqa: E402

_live.add_routes()


def lora_names() -> list[str]:
    return folder_paths.get_filename_list("loras")


def lora_path(name: str) -> Path:
    return Path(folder_paths.get_full_path_or_raise("loras", name))
