"""Resumable training state as safetensors + JSON (never a pickle).

A state folder holds ``network.kilnstate`` (the LoRA in kohya layout), ``optimizer.kilnstate`` (every
tensor of the optimizer's state, flattened) and ``state.json`` (step, epoch, scheduler, the optimizer's
non-tensor state, and the specs it was made with). ``state.json`` is written last, so a folder without
it is an unfinished save and is ignored.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save

from ..lora.io import atomic_write_bytes

STATE_VERSION = 1


@dataclass(frozen=True)
class TrainState:
    step: int
    network: dict[str, torch.Tensor]
    optimizer: dict
    scheduler: dict
    info: dict


def _split_tensors(obj, prefix, tensors):
    """Replace tensors in a nested state dict by {"__tensor__": key}, collecting them in ``tensors``."""
    if isinstance(obj, torch.Tensor):
        tensors[prefix] = obj.detach().to("cpu").contiguous()
        return {"__tensor__": prefix}
    if isinstance(obj, dict):
        return {"__dict__": [[_split_tensors(k, f"{prefix}.k{i}", tensors), _split_tensors(v, f"{prefix}.{i}", tensors)]
                             for i, (k, v) in enumerate(obj.items())]}
    if isinstance(obj, (list, tuple)):
        return {"__list__": [_split_tensors(v, f"{prefix}.{i}", tensors) for i, v in enumerate(obj)],
                "tuple": isinstance(obj, tuple)}
    if isinstance(obj, float) and (obj != obj or obj in (float("inf"), float("-inf"))):
        return {"__float__": repr(obj)}
    return obj


def _join_tensors(obj, tensors):
    if isinstance(obj, dict):
        if "__tensor__" in obj:
            return tensors[obj["__tensor__"]]
        if "__dict__" in obj:
            return {_join_tensors(k, tensors): _join_tensors(v, tensors) for k, v in obj["__dict__"]}
        if "__list__" in obj:
            items = [_join_tensors(v, tensors) for v in obj["__list__"]]
            return tuple(items) if obj.get("tuple") else items
        if "__float__" in obj:
            return float(obj["__float__"])
    return obj


def save_state(folder: str | Path, state: TrainState) -> Path:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    manifest = folder / "state.json"
    if manifest.exists():
        manifest.unlink()  # the folder is being rewritten: mark it unfinished first
    atomic_write_bytes(folder / "network.kilnstate",
                       save({k: v.detach().cpu().contiguous() for k, v in state.network.items()}))
    opt_tensors: dict[str, torch.Tensor] = {}
    opt_tree = _split_tensors(state.optimizer, "opt", opt_tensors)
    atomic_write_bytes(folder / "optimizer.kilnstate", save(opt_tensors) if opt_tensors else save({"_": torch.zeros(1)}))
    body = {"version": STATE_VERSION, "step": state.step, "optimizer": opt_tree,
            "scheduler": _split_tensors(state.scheduler, "sched", {}), "info": state.info}
    atomic_write_bytes(manifest, json.dumps(body, indent=1, default=str).encode())
    return folder


def load_state(folder: str | Path) -> TrainState:
    folder = Path(folder)
    manifest = folder / "state.json"
    if not manifest.is_file():
        raise FileNotFoundError(f"{folder}: no finished training state here (state.json missing). "
                                "Point resume at a folder written by a Kiln save, e.g. <name>_state.")
    body = json.loads(manifest.read_text())
    if body.get("version") != STATE_VERSION:
        raise ValueError(f"{folder}: state version {body.get('version')} is not {STATE_VERSION}; "
                         "resume it with the Kiln version that wrote it.")
    network = load_file(str(folder / "network.kilnstate"))
    opt_tensors = load_file(str(folder / "optimizer.kilnstate"))
    return TrainState(step=int(body["step"]), network=network,
                      optimizer=_join_tensors(body["optimizer"], opt_tensors),
                      scheduler=_join_tensors(body["scheduler"], {}), info=body.get("info", {}))
