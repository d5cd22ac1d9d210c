"""Dataset nodes: load a kohya-style folder into a KILN_DATASET, and preview it."""
from __future__ import annotations

import logging

import torch
from comfy_api.latest import io

from .. import host
from ..core.data import DatasetConfig, dataset_fingerprint, load_dataset, parse_color
from ..core.data.controls import with_control_images
from ..core.plots.dataset_grid import preview_grid
from ..core.train.loop import TrainConfig
from .schema import Dataset, config_values, field_default, from_field, help_of, node_input, output

log = logging.getLogger("kiln")

# Shown as text ('R,G,B'); the default is DatasetConfig's tuple.
BACKGROUND = ",".join(str(c) for c in field_default(DatasetConfig, "background"))

# The few inputs every dataset needs stay in view; the bucket, augmentation, regularization and caption-dropout
# settings are folded away as advanced (the 2026 frontend's "show advanced").
ADVANCED = {"caption_extension", "enable_buckets", "min_bucket_reso", "max_bucket_reso", "bucket_reso_steps",
            "bucket_no_upscale", "random_crop", "color_aug", "keep_tokens_separator", "caption_dropout_rate",
            "tag_dropout_rate", "caption_suffix", "reg_path", "reg_repeats", "prior_loss_weight", "background",
            "frame_extraction", "frame_stride", "frame_sample", "target_fps", "controls"}
OPTIONAL = ("caption_phrase", "enable_buckets", "min_bucket_reso", "max_bucket_reso", "bucket_reso_steps",
            "bucket_no_upscale", "random_crop", "flip_aug", "color_aug", "shuffle_caption", "keep_tokens",
            "keep_tokens_separator", "caption_dropout_rate", "tag_dropout_rate", "caption_prefix", "caption_suffix",
            "reg_path", "reg_repeats", "prior_loss_weight")
# Clip inputs come after every older input, so workflows saved before them keep their widget values in place.
CLIP_INPUTS = ("frame_extraction", "target_frames", "frame_stride", "frame_sample", "target_fps")
# Edit pairs (docs/edit.md) come after those, for the same reason.
CONTROL_HELP = ("Control images from the graph (a depth map, a pose render...) in the dataset's image order: one per "
                "image, or 2-3 per image next to each other. They replace control folders.")


class KilnLoadDataset(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="KilnLoadDataset", display_name="Kiln Load Dataset", category="Kiln/Dataset",
            description="Load images and captions the way kohya's scripts do (N_name folders, repeats, buckets); "
                        "odd images are converted and broken ones skipped with one warning.",
            inputs=[
                node_input(io.String, "path", default="",
                           tooltip="Folder holding N_name subfolders (kohya's layout: N = repeats per epoch, name = "
                                   "the class text used for images without a caption; several folders = several "
                                   "concepts), or a folder of images. Relative paths are read from ComfyUI's input "
                                   "folder."),
                *(from_field(DatasetConfig, name, advanced=name in ADVANCED)
                  for name in ("resolution", "caption_source", "caption_extension", "repeats")),
                *(from_field(DatasetConfig, name, optional=True, advanced=name in ADVANCED) for name in OPTIONAL),
                node_input(io.String, "background", default=BACKGROUND, optional=True, advanced=True,
                           tooltip=help_of(DatasetConfig, "background")),
                *(from_field(DatasetConfig, name, optional=True, advanced=name in ADVANCED) for name in CLIP_INPUTS),
                from_field(DatasetConfig, "controls", optional=True, advanced=True),
                node_input(io.Image, "control_images", optional=True, tooltip=CONTROL_HELP),
                from_field(DatasetConfig, "control_resolution", optional=True, advanced=True),
            ],
            outputs=[output(Dataset, "dataset")])

    @classmethod
    def fingerprint_inputs(cls, path, reg_path="", **_):
        # Re-run when files in the folders change, not only when the inputs do (a refused path is refused by execute).
        try:
            return dataset_fingerprint(host.resolve_input_path(path), host.resolve_input_path(reg_path))
        except ValueError:
            return f"refused:{path}|{reg_path}"

    @classmethod
    def execute(cls, path, resolution, caption_source, caption_extension, repeats, reg_path="",
                background=BACKGROUND, control_images=None, **options):
        cfg = DatasetConfig(path=host.resolve_input_path(path), resolution=resolution, caption_source=caption_source,
                            caption_extension=caption_extension, repeats=repeats,
                            reg_path=host.resolve_input_path(reg_path), background=parse_color(background),
                            **config_values(DatasetConfig, options))
        bar = []

        def progress(done, total):
            if not bar:
                bar.append(host.progress_bar(total))
            bar[0].update(1)
        dataset = load_dataset(cfg, warn=log.warning, progress=progress, interrupted=host.throw_if_interrupted)
        if control_images is not None:
            dataset = with_control_images(dataset, control_images)
        log.info("Kiln: %s", dataset.summary())
        return io.NodeOutput(dataset)


class KilnDatasetPreview(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="KilnDatasetPreview", display_name="Kiln Dataset Preview", category="Kiln/Dataset",
            description="A grid of a few images per bucket, cropped as training sees them, with their captions; and "
                        "a summary: images, repeats, steps per epoch, buckets and their counts, tag frequencies.",
            is_output_node=True,
            inputs=[
                node_input(Dataset, "dataset", tooltip="From Kiln Load Dataset (or a tagger / tag filter)."),
                node_input(io.Int, "per_bucket", default=4, min=1, max=32,
                           tooltip="Images shown per bucket (one row per bucket)."),
                from_field(TrainConfig, "batch_size", tooltip="Batch size, for the steps-per-epoch figure."),
                from_field(TrainConfig, "epochs", tooltip="Epochs, for the total-steps figure."),
            ],
            outputs=[output(io.Image, "grid"), output(io.String, "summary")])

    @classmethod
    def execute(cls, dataset, per_bucket, batch_size, epochs):
        grid = torch.from_numpy(preview_grid(dataset, per_bucket))[None]
        summary = dataset.summary(batch_size, epochs)
        return io.NodeOutput(grid, summary, ui={"text": [summary]})


NODES = (KilnLoadDataset, KilnDatasetPreview)
