"""Dataset nodes: load a kohya-style folder into a KILN_DATASET, and preview it."""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from .. import host
from ..core.data import DatasetConfig, load_dataset

log = logging.getLogger("kiln")


class KilnLoadDataset:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "path": ("STRING", {"default": "", "tooltip": "Folder of N_name subfolders (N = repeats, name = class text for images without captions) or of images. Relative paths are read from ComfyUI's input folder."}),
            "resolution": ("INT", {"default": 512, "min": 64, "max": 4096, "step": 64, "tooltip": "Training resolution; buckets keep about this many pixels."}),
            "caption_source": (["files", "phrase", "none"], {"default": "files", "tooltip": "files: text files beside the images; phrase: one phrase for every image; none: no captions (the LoRA always applies)."}),
            "caption_extension": ("STRING", {"default": ".txt", "tooltip": "Extension of the caption files (.txt or .caption)."}),
            "repeats": ("INT", {"default": 1, "min": 1, "max": 1000, "tooltip": "Repeats for a flat folder (N_name folders carry their own N)."}),
        }, "optional": {
            "caption_phrase": ("STRING", {"default": "", "tooltip": "The phrase used when caption_source is 'phrase'."}),
            "enable_buckets": ("BOOLEAN", {"default": True, "tooltip": "Aspect-ratio bucketing; off crops everything to a square."}),
            "min_bucket_reso": ("INT", {"default": 256, "min": 64, "max": 4096, "step": 64, "tooltip": "Smallest bucket side."}),
            "max_bucket_reso": ("INT", {"default": 1024, "min": 64, "max": 8192, "step": 64, "tooltip": "Largest bucket side."}),
            "bucket_reso_steps": ("INT", {"default": 64, "min": 8, "max": 512, "step": 8, "tooltip": "Bucket side granularity."}),
            "bucket_no_upscale": ("BOOLEAN", {"default": False, "tooltip": "Never upscale small images into a bigger bucket."}),
            "random_crop": ("BOOLEAN", {"default": False, "tooltip": "Random instead of centre crop after scaling to cover the bucket."}),
            "flip_aug": ("BOOLEAN", {"default": False, "tooltip": "Random horizontal flips (not for asymmetric subjects)."}),
            "color_aug": ("BOOLEAN", {"default": False, "tooltip": "Small random hue/gamma changes (disables latent caching)."}),
            "shuffle_caption": ("BOOLEAN", {"default": False, "tooltip": "Shuffle comma-separated tags every step (the first keep_tokens stay)."}),
            "keep_tokens": ("INT", {"default": 0, "min": 0, "max": 100, "tooltip": "Leading tags kept in place when shuffling (put the trigger word first)."}),
            "keep_tokens_separator": ("STRING", {"default": "", "tooltip": "Alternative to keep_tokens: tags before this separator (e.g. '|||') stay fixed."}),
            "caption_dropout_rate": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 1.0, "step": 0.01, "tooltip": "Chance to train a step with an empty caption."}),
            "tag_dropout_rate": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 1.0, "step": 0.01, "tooltip": "Chance to drop each (non-kept) tag per step."}),
            "caption_prefix": ("STRING", {"default": "", "tooltip": "Text put before every caption (e.g. the trigger word)."}),
            "caption_suffix": ("STRING", {"default": "", "tooltip": "Text put after every caption."}),
            "reg_path": ("STRING", {"default": "", "tooltip": "Regularization images (N_name or flat folder); empty for none."}),
            "reg_repeats": ("INT", {"default": 1, "min": 1, "max": 1000, "tooltip": "Repeats for a flat regularization folder."}),
            "prior_loss_weight": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 10.0, "step": 0.05, "tooltip": "Loss weight of regularization images."}),
        }}

    RETURN_TYPES = ("KILN_DATASET",)
    RETURN_NAMES = ("dataset",)
    FUNCTION = "load"
    CATEGORY = "Kiln/Dataset"
    DESCRIPTION = "Load images and captions the way kohya's scripts do; odd or broken images are converted or skipped with one warning."

    def load(self, path, resolution, caption_source, caption_extension, repeats, reg_path="", **options):
        cfg = DatasetConfig(path=host.resolve_input_path(path), resolution=resolution, caption_source=caption_source,
                            caption_extension=caption_extension, repeats=repeats, reg_path=host.resolve_input_path(reg_path), **options)
        dataset = load_dataset(cfg, warn=log.warning)
        log.info("Kiln: %s", dataset.summary())
        return (dataset,)


def _draw_caption(img: Image.Image, text: str, height: int = 36) -> Image.Image:
    out = Image.new("RGB", (img.width, img.height + height), (24, 24, 24))
    out.paste(img, (0, 0))
    ImageDraw.Draw(out).text((4, img.height + 4), text[:80] + ("…" if len(text) > 80 else ""), fill=(230, 230, 230))
    return out


class KilnDatasetPreview:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "dataset": ("KILN_DATASET", {"tooltip": "From Kiln Load Dataset."}),
            "per_bucket": ("INT", {"default": 4, "min": 1, "max": 32, "tooltip": "Images shown per bucket."}),
            "batch_size": ("INT", {"default": 1, "min": 1, "max": 256, "tooltip": "For the steps-per-epoch figure."}),
            "epochs": ("INT", {"default": 10, "min": 1, "max": 10000, "tooltip": "For the total-steps figure."}),
        }}

    RETURN_TYPES = ("IMAGE", "STRING")
    RETURN_NAMES = ("grid", "summary")
    FUNCTION = "preview"
    OUTPUT_NODE = True
    CATEGORY = "Kiln/Dataset"
    DESCRIPTION = "A grid of images per bucket with their captions, and the dataset summary (repeats, steps, buckets, tags)."

    def preview(self, dataset, per_bucket, batch_size, epochs):
        tile = 160
        refs_by_bucket: dict = {}
        for batch in dataset.epoch_plan(0, 1, 0):
            for ref in batch:
                group = refs_by_bucket.setdefault(ref.bucket, [])
                if len(group) < per_bucket and ref.index not in [r.index for r in group]:
                    group.append(ref)
        rows = []
        for bucket in sorted(refs_by_bucket):
            cells = []
            for ref in refs_by_bucket[bucket]:
                arr = (dataset.load_pixels(ref).numpy() * 255).astype(np.uint8)
                im = Image.fromarray(arr)
                im.thumbnail((tile, tile))
                canvas = Image.new("RGB", (tile, tile), (40, 40, 40))
                canvas.paste(im, ((tile - im.width) // 2, (tile - im.height) // 2))
                cells.append(_draw_caption(canvas, f"{bucket[0]}x{bucket[1]}: {dataset.images[ref.index].caption}"))
            rows.append(cells)
        width = tile * max(len(r) for r in rows)
        grid = Image.new("RGB", (width, sum(r[0].height for r in rows)), (16, 16, 16))
        y = 0
        for r in rows:
            for i, cell in enumerate(r):
                grid.paste(cell, (i * tile, y))
            y += r[0].height
        summary = dataset.summary(batch_size, epochs)
        image = torch.from_numpy(np.asarray(grid, dtype=np.float32) / 255.0)[None]
        return {"ui": {"text": [summary]}, "result": (image, summary)}


NODE_CLASS_MAPPINGS = {"KilnLoadDataset": KilnLoadDataset, "KilnDatasetPreview": KilnDatasetPreview}
NODE_DISPLAY_NAME_MAPPINGS = {"KilnLoadDataset": "Kiln Load Dataset", "KilnDatasetPreview": "Kiln Dataset Preview"}
