"""Latents encoded once per (image content, bucket, crop, flip) under one encoder and the settings that
change pixels; kept in memory and optionally on disk (safetensors, atomic)."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Callable

import torch
from safetensors.torch import load_file, save

from ..lora.io import atomic_write_bytes


class LatentCache:
    def __init__(self, encode: Callable[[torch.Tensor], torch.Tensor], encoder_id: str, disk_dir: str | None = None):
        self.encode = encode
        self.encoder_id = encoder_id
        self.disk_dir = Path(disk_dir) if disk_dir else None
        self.memory: dict[str, torch.Tensor] = {}
        self.hits = 0
        self.misses = 0

    def key(self, dataset, ref) -> str:
        e = dataset.images[ref.index]
        c = dataset.config
        parts = {"content": e.content_hash, "bucket": list(ref.bucket), "crop": list(ref.crop), "flip": ref.flip,
                 "encoder": self.encoder_id, "size": list(e.size), "background": list(c.background),
                 "resample": "lanczos-rg2"}
        return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:32]

    def _disk_path(self, key: str) -> Path | None:
        return self.disk_dir / f"{key}.safetensors" if self.disk_dir else None

    def get(self, dataset, refs) -> torch.Tensor:
        if dataset.config.color_aug:
            # Colour augmentation changes the pixels every step: nothing to reuse.
            self.misses += len(refs)
            return self.encode(torch.stack([dataset.load_pixels(r) for r in refs]))
        keys = [self.key(dataset, r) for r in refs]
        missing = []
        for ref, key in zip(refs, keys):
            if key in self.memory:
                continue
            path = self._disk_path(key)
            if path is not None and path.is_file():
                self.memory[key] = load_file(str(path))["latent"]
                continue
            missing.append((ref, key))
        self.hits += len(refs) - len(missing)
        self.misses += len(missing)
        if missing:
            unique = list({k: r for r, k in missing}.items())
            latents = self.encode(torch.stack([dataset.load_pixels(r) for _, r in unique]))
            for (key, _), lat in zip(unique, latents):
                lat = lat.detach().to("cpu").contiguous().clone()
                self.memory[key] = lat
                path = self._disk_path(key)
                if path is not None:
                    atomic_write_bytes(path, save({"latent": lat}))
        return torch.stack([self.memory[k] for k in keys])
