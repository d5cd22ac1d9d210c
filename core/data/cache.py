"""Latents encoded once per (image content, bucket, crop, flip) under one encoder and every setting that
changes the pixels the encoder sees; kept in memory and optionally on disk (safetensors, written atomically).

The key is a hash of everything that decides the encoder's input: the file's bytes (so an edited image
never reuses a stale latent), its oriented size, the bucket, the size it is scaled to before the crop (set
by resolution / min / max / step / no-upscale through the bucket and the scaling rule), the crop offset, the
flip, the compositing background, the resampling method, and the encoder's identity. Colour augmentation
draws new pixels every step, so with it on nothing is cached (every sample is encoded)."""
from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Callable

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save

from ..lora.io import atomic_write_bytes

# Bump when the pixel pipeline changes in a way the other key parts do not capture.
PIPELINE_VERSION = "kiln-pixels-2:lanczos-rg2"


class LatentCache:
    def __init__(self, encode: Callable[[torch.Tensor], torch.Tensor], encoder_id: str, disk_dir: str | None = None):
        """``encode`` takes pixels [B, H, W, 3] in 0..1 and returns latents [B, C, h, w]."""
        self.encode = encode
        self.encoder_id = encoder_id
        self.disk_dir = Path(disk_dir) if disk_dir else None
        self.memory: dict[str, torch.Tensor] = {}
        self.hits = 0
        self.misses = 0

    def _encode(self, pixels: list[torch.Tensor]) -> torch.Tensor:
        """One latent per image, or an error that says why: an encoder that returns fewer latents than it was
        given images (a video VAE reading the batch as one clip) would otherwise pair latents with the wrong
        captions, or leave some images without one."""
        latents = self.encode(torch.stack(pixels))
        if latents.shape[0] != len(pixels):
            raise RuntimeError(f"the VAE returned {latents.shape[0]} latents for {len(pixels)} images (a video VAE "
                               "reads a batch as one clip: encode each image on its own); train with batch_size 1 "
                               "or report this VAE")
        return latents

    def key(self, dataset, ref) -> str:
        e = dataset.images[ref.index]
        parts = {"content": e.content_hash, "size": list(e.size), "bucket": list(ref.bucket),
                 "scaled": list(dataset.scaled_size(e, ref.bucket)), "crop": list(ref.crop), "flip": bool(ref.flip),
                 "background": list(dataset.config.background), "pipeline": PIPELINE_VERSION,
                 "encoder": self.encoder_id}
        if e.frames:
            parts["frames"] = list(e.frames)
        return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:40]

    def _disk_path(self, key: str) -> Path | None:
        return self.disk_dir / f"{key}.safetensors" if self.disk_dir else None

    def _from_disk(self, key: str) -> torch.Tensor | None:
        path = self._disk_path(key)
        if path is None or not path.is_file():
            return None
        try:
            return load_file(str(path))["latent"]
        except (SafetensorError, OSError, KeyError) as exc:   # a damaged cache file is only a miss
            logging.warning("Kiln: latent cache file %s unreadable (%s); encoding again", path, exc)
            return None

    def get(self, dataset, refs) -> torch.Tensor:
        """Latents [B, C, h, w] for ``refs`` (one bucket); only the misses are encoded, in one batch."""
        if dataset.config.color_aug:
            # Colour augmentation changes the pixels every step: nothing to reuse.
            self.misses += len(refs)
            return self._encode([dataset.load_pixels(r) for r in refs])
        return self._cached([self.key(dataset, r) for r in refs], refs, dataset.load_pixels)

    def control_key(self, dataset, ref, k: int) -> str:
        """Control ``k`` of ``ref``'s image: its own content under its target's cut (bucket, scale, crop, flip)."""
        from .controls import sample_control_size
        parts = {"control": dataset.images[ref.index].controls[k].digest, "slot": k, "target": self.key(dataset, ref)}
        size = sample_control_size(dataset, ref)
        if size != tuple(ref.bucket):    # a control_resolution other than the target's
            parts["size"] = list(size)
        return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:40]

    def get_controls(self, dataset, refs) -> list[torch.Tensor]:
        """Each control slot's latents [B, C, h, w] for ``refs`` (an edit pair's "before" images; empty for a plain
        dataset). Controls are never colour-augmented, so they are cached even when the targets are not."""
        return [self._cached([self.control_key(dataset, r, k) for r in refs], refs,
                             lambda r, _k=k: dataset.load_control(r, _k))
                for k in range(getattr(dataset, "controls_per_image", 0))]

    def _cached(self, keys: list[str], refs, load) -> torch.Tensor:
        """Latents for ``keys`` from memory or disk; the misses' pixels (``load(ref)``) encoded in one batch."""
        missing: dict[str, object] = {}
        for ref, key in zip(refs, keys):
            if key in self.memory or key in missing:
                continue
            lat = self._from_disk(key)
            if lat is not None:
                self.memory[key] = lat
            else:
                missing[key] = ref
        self.misses += sum(1 for k in keys if k in missing)
        self.hits += len(keys) - sum(1 for k in keys if k in missing)
        if missing:
            latents = self._encode([load(r) for r in missing.values()])
            for key, lat in zip(missing, latents):
                lat = lat.detach().to("cpu").contiguous().clone()
                self.memory[key] = lat
                path = self._disk_path(key)
                if path is not None:
                    atomic_write_bytes(path, save({"latent": lat}))
        return torch.stack([self.memory[k] for k in keys])
