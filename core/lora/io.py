"""Reading and writing LoRA files: safetensors only, atomically, with kohya's hashes."""
from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save as st_save

from .value import KilnLora


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write to a temp file in the target folder, fsync, then rename: a crash never leaves half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def safetensors_tensor_hashes(blob: bytes) -> tuple[str, str]:
    """kohya/A1111-addnet hashes of a safetensors blob: sha256 of the tensor data (header skipped),
    and the 8-hex legacy hash of the 64 KiB at 1 MiB."""
    header_len = int.from_bytes(blob[:8], "little")
    model_hash = hashlib.sha256(blob[8 + header_len:]).hexdigest()
    legacy_hash = hashlib.sha256(blob[0x100000:0x110000]).hexdigest()[:8]
    return model_hash, legacy_hash


def _contiguous_cpu(tensors):
    return {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}


def lora_to_bytes(lora: KilnLora) -> bytes:
    """Serialise with ``sshs_*`` hashes computed the way kohya does (over ``ss_*`` metadata only),
    so A1111/Forge show the same hash kohya's tools would."""
    tensors = _contiguous_cpu(lora.tensors)
    meta = {k: v for k, v in lora.metadata.items() if not k.startswith("sshs_")}
    hashed = st_save(tensors, {k: v for k, v in meta.items() if k.startswith("ss_")})
    model_hash, legacy_hash = safetensors_tensor_hashes(hashed)
    meta["sshs_model_hash"] = model_hash
    meta["sshs_legacy_hash"] = legacy_hash
    return st_save(tensors, meta)


def save_lora(lora: KilnLora, path: str | os.PathLike) -> Path:
    path = Path(path)
    if path.suffix != ".safetensors":
        raise ValueError(f"{path}: Kiln writes LoRAs as .safetensors only; give the file that extension.")
    return atomic_write_bytes(path, lora_to_bytes(lora))


def load_lora_file(path: str | os.PathLike) -> KilnLora:
    """Read a LoRA file as stored (any key layout); never unpickles."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such LoRA file.")
    if path.suffix.lower() != ".safetensors":
        raise ValueError(
            f"{path}: only .safetensors LoRAs are read (pickled .pt/.ckpt files can run code when loaded). "
            "Convert it with a trusted tool first.")
    try:
        with safe_open(str(path), framework="pt", device="cpu") as fh:
            meta = fh.metadata() or {}
            tensors = {k: fh.get_tensor(k) for k in fh.keys()}
    except Exception as exc:  # safetensors raises several types for a damaged header
        raise ValueError(f"{path}: not a readable safetensors file ({exc}). Re-download or re-save it.") from exc
    return KilnLora(tensors, meta)
