"""Dataset nodes: load a kohya-style folder into a KILN_DATASET, and preview it."""
from __future__ import annotations

import logging

import torch

from .. import host
from ..core.data import DatasetConfig, dataset_fingerprint, load_dataset, parse_color
from ..core.data.preview import preview_grid

log = logging.getLogger("kiln")


class KilnLoadDataset:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "path": ("STRING", {"default": "", "tooltip": "Folder holding N_name subfolders (kohya's layout: N = repeats per epoch, name = the class text used for images without a caption; several folders = several concepts), or a folder of images. Relative paths are read from ComfyUI's input folder."}),
            "resolution": ("INT", {"default": 512, "min": 64, "max": 4096, "step": 64, "tooltip": "Training resolution: buckets keep about resolution x resolution pixels (512 for SD1.5, 1024 for SDXL)."}),
            "caption_source": (["files", "phrase", "none"], {"default": "files", "tooltip": "files: a text file beside each image (same name, caption_extension); phrase: caption_phrase for every image; none: empty captions (the LoRA then always applies)."}),
            "caption_extension": ("STRING", {"default": ".txt", "tooltip": "Extension of the caption files: .txt (most taggers) or .caption. A warning says when the other kind is there instead."}),
            "repeats": ("INT", {"default": 1, "min": 1, "max": 1000, "tooltip": "Repeats per epoch for a flat folder of images (N_name folders carry their own N)."}),
        }, "optional": {
            "caption_phrase": ("STRING", {"default": "", "tooltip": "The caption for every image when caption_source is 'phrase' (e.g. 'zyx woman')."}),
            "enable_buckets": ("BOOLEAN", {"default": True, "tooltip": "Aspect-ratio bucketing: images keep their shape. Off: everything is scaled and cropped to a resolution x resolution square."}),
            "min_bucket_reso": ("INT", {"default": 256, "min": 64, "max": 4096, "step": 64, "tooltip": "Smallest bucket side in pixels."}),
            "max_bucket_reso": ("INT", {"default": 1024, "min": 64, "max": 8192, "step": 64, "tooltip": "Largest bucket side in pixels."}),
            "bucket_reso_steps": ("INT", {"default": 64, "min": 8, "max": 512, "step": 8, "tooltip": "Bucket sides are multiples of this (64 is safe for every model family)."}),
            "bucket_no_upscale": ("BOOLEAN", {"default": False, "tooltip": "Never upscale: an image smaller than the target area keeps its own size (rounded down to the step) and is only cropped."}),
            "random_crop": ("BOOLEAN", {"default": False, "tooltip": "After scaling to cover the bucket, crop at a random place each epoch instead of the centre."}),
            "flip_aug": ("BOOLEAN", {"default": False, "tooltip": "Mirror images at random (leave off for asymmetric subjects: text, logos, side partings)."}),
            "color_aug": ("BOOLEAN", {"default": False, "tooltip": "Small random hue and gamma changes each step. Latents are then encoded every step (no latent cache)."}),
            "shuffle_caption": ("BOOLEAN", {"default": False, "tooltip": "Shuffle the comma-separated tags every step; the first keep_tokens tags stay in place."}),
            "keep_tokens": ("INT", {"default": 0, "min": 0, "max": 100, "tooltip": "Leading tags that shuffle and tag dropout never touch (put the trigger word first and set 1)."}),
            "keep_tokens_separator": ("STRING", {"default": "", "tooltip": "Instead of keep_tokens: tags before this separator (e.g. '|||') stay fixed; a second separator fixes a tail too."}),
            "caption_dropout_rate": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 1.0, "step": 0.01, "tooltip": "Chance that a step trains with an empty caption."}),
            "tag_dropout_rate": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 1.0, "step": 0.01, "tooltip": "Chance to drop each (non-kept) tag on a step."}),
            "caption_prefix": ("STRING", {"default": "", "tooltip": "Put before every caption, outside the shuffle (e.g. the trigger word)."}),
            "caption_suffix": ("STRING", {"default": "", "tooltip": "Put after every caption, outside the shuffle."}),
            "reg_path": ("STRING", {"default": "", "tooltip": "Regularization images (N_name subfolders or a flat folder); empty for none. They are balanced to the training count each epoch."}),
            "reg_repeats": ("INT", {"default": 1, "min": 1, "max": 1000, "tooltip": "Repeats for a flat regularization folder."}),
            "prior_loss_weight": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 10.0, "step": 0.05, "tooltip": "Loss weight of regularization samples (kohya's prior_loss_weight)."}),
            "background": ("STRING", {"default": "255,255,255", "tooltip": "Colour transparent images are composited on: 'R,G,B', '#rrggbb', white or black."}),
        }}

    RETURN_TYPES = ("KILN_DATASET",)
    RETURN_NAMES = ("dataset",)
    FUNCTION = "load"
    CATEGORY = "Kiln/Dataset"
    DESCRIPTION = ("Load images and captions the way kohya's scripts do (N_name folders, repeats, buckets); "
                   "odd images are converted and broken ones skipped with one warning.")

    @classmethod
    def IS_CHANGED(cls, path, reg_path="", **_):
        # Re-run when files in the folders change, not only when the inputs do.
        return dataset_fingerprint(host.resolve_input_path(path), host.resolve_input_path(reg_path))

    def load(self, path, resolution, caption_source, caption_extension, repeats, reg_path="",
             background="255,255,255", **options):
        cfg = DatasetConfig(path=host.resolve_input_path(path), resolution=resolution, caption_source=caption_source,
                            caption_extension=caption_extension, repeats=repeats,
                            reg_path=host.resolve_input_path(reg_path), background=parse_color(background), **options)
        bar = []

        def progress(done, total):
            if not bar:
                bar.append(host.progress_bar(total))
            bar[0].update(1)
        dataset = load_dataset(cfg, warn=log.warning, progress=progress, interrupted=host.throw_if_interrupted)
        log.info("Kiln: %s", dataset.summary())
        return (dataset,)


class KilnDatasetPreview:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "dataset": ("KILN_DATASET", {"tooltip": "From Kiln Load Dataset (or a tagger / tag filter)."}),
            "per_bucket": ("INT", {"default": 4, "min": 1, "max": 32, "tooltip": "Images shown per bucket (one row per bucket)."}),
            "batch_size": ("INT", {"default": 1, "min": 1, "max": 256, "tooltip": "Batch size, for the steps-per-epoch figure."}),
            "epochs": ("INT", {"default": 10, "min": 1, "max": 10000, "tooltip": "Epochs, for the total-steps figure."}),
        }}

    RETURN_TYPES = ("IMAGE", "STRING")
    RETURN_NAMES = ("grid", "summary")
    FUNCTION = "preview"
    OUTPUT_NODE = True
    CATEGORY = "Kiln/Dataset"
    DESCRIPTION = ("A grid of a few images per bucket, cropped as training sees them, with their captions; and a "
                   "summary: images, repeats, steps per epoch, buckets and their counts, tag frequencies.")

    def preview(self, dataset, per_bucket, batch_size, epochs):
        grid = torch.from_numpy(preview_grid(dataset, per_bucket))[None]
        summary = dataset.summary(batch_size, epochs)
        return {"ui": {"text": [summary]}, "result": (grid, summary)}


NODE_CLASS_MAPPINGS = {"KilnLoadDataset": KilnLoadDataset, "KilnDatasetPreview": KilnDatasetPreview}
NODE_DISPLAY_NAME_MAPPINGS = {"KilnLoadDataset": "Kiln Load Dataset", "KilnDatasetPreview": "Kiln Dataset Preview"}
