"""Reading and writing LoRA files: safetensors only, atomically, with kohya's hashes."""
from __future__ import annotations

import hashlib
import logging
import os
import re
import tempfile
import time
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save as st_save

from .value import KilnLora

log = logging.getLogger("kiln")


# Longest file-name stem Kiln writes: filesystems cap a name at 255 bytes, and a save adds a step number,
# "-state", ".safetensors" and the temp file's "." + 8 random characters + ".tmp" to it.
MAX_STEM_BYTES = 120

# Kiln's temp files: "." + target name + "." + mkstemp's 8 random characters + ".tmp".
TEMP_FILE = re.compile(r"^\..+\.[A-Za-z0-9_]{8}\.tmp$")


def short_file_stem(name: str, max_bytes: int = MAX_STEM_BYTES) -> str:
    """``name`` made safe as a file-name stem (letters, digits, ``-_. ``) and at most ``max_bytes`` in UTF-8.
    A longer name keeps its start and gets ``-`` + 8 hex of its hash, so two long names that share a
    start still differ. Raises ValueError for a name with nothing usable in it."""
    cleaned = re.sub(r"[^\w\-. ]+", "_", name).strip(" .")
    if not cleaned:
        raise ValueError(f"output name {name!r} has no usable characters; use letters, digits, '-' or '_'")
    return cap_name_bytes(cleaned, max_bytes, hashed=name)


def cap_name_bytes(name: str, max_bytes: int = MAX_STEM_BYTES, hashed: str | None = None) -> str:
    """``name`` unchanged when it fits in ``max_bytes`` of UTF-8, else its start (cut at a character
    boundary) + ``-`` + 8 hex of the hash of ``hashed`` (default: ``name``), so long names that share a
    start still differ."""
    if len(name.encode("utf-8")) <= max_bytes:
        return name
    digest = hashlib.sha256((hashed if hashed is not None else name).encode("utf-8")).hexdigest()[:8]
    head = name.encode("utf-8")[: max_bytes - 9].decode("utf-8", errors="ignore").rstrip(" .")
    return f"{head}-{digest}"


def lora_file_in_folder(root: str | os.PathLike, filename: str, overwrite: bool = True) -> Path:
    """The file Kiln Save LoRA writes for ``filename`` (subfolders allowed, ``.safetensors`` optional) in
    the loras folder ``root``. Each part of the name longer than MAX_STEM_BYTES is shortened as training
    saves are (start + hash, with a warning), because the file system refuses names over 255 bytes only
    after the LoRA is trained. Without ``overwrite`` an existing file gets ``_001``, ``_002``... instead."""
    root = Path(root)
    rel = filename.strip().replace("\\", "/")
    if rel.endswith(".safetensors"):
        rel = rel[: -len(".safetensors")]
    parts = rel.split("/")
    capped = [cap_name_bytes(part) for part in parts]
    if capped != parts:
        log.warning("Kiln: LoRA file name %r has a part longer than %d bytes; it is saved as %r",
                    filename, MAX_STEM_BYTES, "/".join(capped) + ".safetensors")
    rel = "/".join(capped)
    target = (root / f"{rel}.safetensors").resolve()
    if not rel.strip(" ./"):
        raise ValueError("Kiln Save LoRA: the file name is empty; type a name such as my_lora.")
    if root.resolve() not in target.parents:
        raise ValueError(f"Kiln Save LoRA: {filename!r} points outside the loras folder {root}; use a plain name.")
    if not overwrite:
        n = 1
        while target.exists():
            target = target.with_name(f"{capped[-1]}_{n:03d}.safetensors")
            n += 1
    return target


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def remove_stale_temp_files(folder: str | os.PathLike, older_than_s: float = 0.0) -> list[Path]:
    """Delete Kiln's own temp files (left by a process killed mid-write) in ``folder`` and its subfolders,
    those last touched more than ``older_than_s`` ago. Other files are never touched."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    removed = []
    now = time.time()
    for p in folder.rglob(".*.tmp"):
        try:
            if p.is_file() and TEMP_FILE.match(p.name) and now - p.stat().st_mtime >= older_than_s:
                p.unlink()
                removed.append(p)
        except OSError:
            pass  # gone already, or not ours to delete
    return removed


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write to a temp file in the target folder, fsync, then rename: a crash never leaves half a file.
    The file gets the permissions a plain ``open(path, "w")`` would (mkstemp's are 0600, which hides the
    file from a ComfyUI running as another user)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        if hasattr(os, "fchmod"):
            os.fchmod(fd, 0o666 & ~_umask())
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
    check_finite(tensors, str(path))
    return KilnLora(tensors, meta)


def nonfinite_modules(tensors) -> list[str]:
    """Module names (the part before the first '.') holding a NaN or infinite value."""
    bad = []
    for key, t in tensors.items():
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            module = key.partition(".")[0]
            if module not in bad:
                bad.append(module)
    return bad


def check_finite(tensors, what: str) -> None:
    """Refuse NaN/inf weights: applied, they turn every sampled image black; merged, they spread."""
    bad = nonfinite_modules(tensors)
    if bad:
        raise ValueError(f"{what}: {len(bad)} module(s) hold NaN or infinite values ({', '.join(bad[:5])}"
                         + (" ..." if len(bad) > 5 else "") + "); the file is damaged or its training diverged. "
                         "Use an earlier save of the run, or retrain with a lower learning rate.")
