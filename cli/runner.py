"""Running workflows headless through the host's real executor (``python -m kiln run``, the demo, tests)."""
from __future__ import annotations

import asyncio
import inspect
import json
import logging
import os
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from . import load_pack

load_pack()
from kiln.host import COMFYUI_ROOT  # noqa: E402,F401  (boots the host)
import execution  # noqa: E402
import folder_paths  # noqa: E402
import nodes as host_nodes  # noqa: E402

from kiln.core.workflow import WorkflowError, is_api_format, ui_to_api  # noqa: E402

log = logging.getLogger("kiln")
_BOOTED = False


def boot_host(work_dir: str | Path | None = None) -> None:
    """Load the host's built-in extra nodes and register Kiln's nodes, once per process.

    ``work_dir`` (optional) redirects input/output/temp and adds ``checkpoints``/``loras`` folders there,
    so a demo or a test run never writes into the user's ComfyUI folders.
    """
    global _BOOTED
    if work_dir is not None:
        use_work_dir(work_dir)
    if _BOOTED:
        return
    logging.getLogger().setLevel(logging.INFO)
    asyncio.run(host_nodes.init_extra_nodes(init_custom_nodes=False, init_api_nodes=False))
    from kiln import nodes as kiln_nodes
    host_nodes.NODE_CLASS_MAPPINGS.update(kiln_nodes.NODE_CLASS_MAPPINGS)
    host_nodes.NODE_DISPLAY_NAME_MAPPINGS.update(kiln_nodes.NODE_DISPLAY_NAME_MAPPINGS)
    os.makedirs(folder_paths.get_temp_directory(), exist_ok=True)
    _BOOTED = True


def use_work_dir(work_dir: str | Path) -> Path:
    work = Path(work_dir).resolve()
    for sub in ("input", "output", "temp", "models/checkpoints", "models/loras", "models/wd14_tagger"):
        (work / sub).mkdir(parents=True, exist_ok=True)
    folder_paths.set_input_directory(str(work / "input"))
    folder_paths.set_output_directory(str(work / "output"))
    folder_paths.set_temp_directory(str(work / "temp"))
    folder_paths.add_model_folder_path("checkpoints", str(work / "models/checkpoints"), is_default=True)
    folder_paths.add_model_folder_path("loras", str(work / "models/loras"), is_default=True)
    folder_paths.add_model_folder_path("wd14_tagger", str(work / "models/wd14_tagger"), is_default=True)
    return work


class _Server:
    """The few members of the host's PromptServer the executor uses; messages are kept for callers."""

    def __init__(self):
        self.client_id = None
        self.last_node_id = None
        self.last_prompt_id = None
        self.messages: list[tuple[str, dict]] = []

    def send_sync(self, event, data, sid=None):
        self.messages.append((event, data))

    def queue_updated(self):
        pass


@dataclass
class RunResult:
    success: bool
    outputs: dict                       # node id -> the UI outputs (images, text) the node returned
    messages: list = field(default_factory=list)
    error: dict | None = None

    def files(self) -> list[Path]:
        found = []
        for out in self.outputs.values():
            for item in out.get("images", []) + out.get("kiln_files", []):
                if isinstance(item, dict) and "filename" in item:
                    base = {"output": folder_paths.get_output_directory(), "temp": folder_paths.get_temp_directory(),
                            "input": folder_paths.get_input_directory(),
                            "loras": folder_paths.get_folder_paths("loras")[0]}.get(item.get("type", "output"))
                    if base is not None:
                        found.append(Path(base) / item.get("subfolder", "") / item["filename"])
        return found


def node_classes() -> dict:
    """The host's node table (class_type -> class), Kiln's nodes included once booted."""
    return host_nodes.NODE_CLASS_MAPPINGS


def input_types(class_type: str):
    cls = host_nodes.NODE_CLASS_MAPPINGS.get(class_type)
    if cls is None:
        return None
    return cls.INPUT_TYPES()


def load_workflow(path_or_data) -> dict:
    if isinstance(path_or_data, (str, Path)):
        path = Path(path_or_data)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise WorkflowError(f"{path}: not a readable workflow JSON ({exc})") from exc
    else:
        data = path_or_data
    return data if is_api_format(data) else ui_to_api(data, input_types)


_EXECUTOR = None


def _new_executor(server):
    """The host's PromptExecutor with the classic cache. Newer hosts (2026) read RAM-pressure limits from
    ``cache_args`` at every run and fail on ``None``; older ones have no such argument. Detected by signature."""
    kwargs = {"cache_type": execution.CacheType.CLASSIC}
    if "cache_args" in inspect.signature(execution.PromptExecutor.__init__).parameters:
        kwargs["cache_args"] = {"lru": 0, "ram": 0.0, "ram_inactive": 0.0}
    return execution.PromptExecutor(server, **kwargs)


def validate_prompt(prompt: dict, prompt_id: str | None = None) -> list[str]:
    """The server's own check of an API-format prompt (node types, inputs, links, choices such as file names),
    as on Queue; returns the output nodes to execute, or raises WorkflowError with the host's node errors."""
    boot_host()
    valid = asyncio.run(execution.validate_prompt(prompt_id or str(uuid.uuid4()), prompt, None))
    if not valid[0]:
        details = json.dumps(valid[3], indent=1, default=str)[:4000]
        raise WorkflowError(f"the workflow does not validate: {valid[1].get('message')} {valid[1].get('details', '')}\n{details}")
    return valid[2]


def run_prompt(prompt: dict, fresh_cache: bool = True) -> RunResult:
    """Validate and execute an API-format prompt in-process, as the server's worker would."""
    global _EXECUTOR
    prompt_id = str(uuid.uuid4())
    outputs_to_run = validate_prompt(prompt, prompt_id)
    server = _Server()
    if _EXECUTOR is None or fresh_cache:
        _EXECUTOR = _new_executor(server)
    _EXECUTOR.server = server
    _EXECUTOR.execute(prompt, prompt_id, {"client_id": None}, outputs_to_run)
    error = None
    for event, data in _EXECUTOR.status_messages:
        if event in ("execution_error", "execution_interrupted"):
            error = dict(data, event=event)
    outputs = dict(_EXECUTOR.history_result.get("outputs", {}))
    return RunResult(_EXECUTOR.success and error is None, outputs, list(_EXECUTOR.status_messages), error)


def run_workflow(path_or_data) -> RunResult:
    boot_host()
    return run_prompt(load_workflow(path_or_data))
