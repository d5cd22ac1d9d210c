"""Tagging nodes: WD14-style ONNX tagger, tag filter, tag frequency."""
from __future__ import annotations

import logging
from pathlib import Path

import torch
from comfy_api.latest import io

from .. import host
from ..core.paths import check_caption_extension
from ..core.data.scan import images_under
from ..core.tags.filters import TagFilterSpec, apply_filter, parse_patterns, parse_replace
from ..core.tags.frequency import comparison_chart, comparison_text, frequency, frequency_chart, frequency_text
from ..core.tags.hub import HUB_TAGGERS, ensure_model, local_names
from ..core.tags.labels import Labels
from ..core.tags.tagger import TagSettings, tag_images, write_captions
from .schema import (Dataset, caption_extension_input, caption_mode_input, image_folder_input, node_input,
                     offline_input, output)

log = logging.getLogger("kiln")
MODELS_KEY = "wd14_tagger"


def _model_dirs() -> list[Path]:
    host.register_model_folder(MODELS_KEY, "wd14_tagger", {".onnx", ".csv"})
    return host.model_folder_paths(MODELS_KEY)



def _threshold(id, default, tooltip):  # noqa: A002
    return node_input(io.Float, id, default=default, min=0.0, max=1.0, step=0.01, tooltip=tooltip)


def _text_input(tooltip):
    return node_input(io.String, "text", force_input=True, optional=True, tooltip=tooltip)


def _captions_in(text: str | None, dataset) -> tuple[list[str], list[str]]:
    """(line prefixes, captions) from text ('name: tags' lines from the tagger work too) and/or a dataset."""
    heads, caps = [], []
    for line in (text or "").splitlines():
        head, sep, tags = line.rpartition(": ") if ": " in line else ("", "", line)
        heads.append(head + sep)
        caps.append(tags)
    if dataset is not None:
        caps += [e.caption for e in dataset.images]
    return heads, caps


class KilnTagger(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        models = sorted(set(HUB_TAGGERS) | set(local_names(_model_dirs())))
        return io.Schema(
            node_id="KilnTagger", display_name="Kiln Tagger (WD14)", category="Kiln/Tagging",
            is_output_node=True,   # writing caption files is the point: a graph of this node alone runs it
            description="Auto-tag images with an ONNX tagger (WD14 v2/v3, pixai, Camie, cl_tagger); writes captions "
                        "beside the images and outputs them.",
            inputs=[
                node_input(io.Combo, "model", options=models, default="wd-v1-4-moat-tagger-v2",
                           tooltip="A SmilingWolf WD14 v2/v3, pixai, Camie or cl_tagger model (downloaded once into "
                                   "models/wd14_tagger), or any local <name>.onnx with its tag file there (<name>.csv, "
                                   "or the model's .json tag file); the format is read from the model."),
                image_folder_input("tag"),
                _threshold("general_threshold", 0.35, "Confidence needed for general tags."),
                _threshold("character_threshold", 0.85, "Confidence needed for character tags."),
                caption_mode_input("Write captions beside the images: overwrite, append new tags, keep existing "
                                   "files, or write nothing (graph only)."),
                node_input(Dataset, "dataset", optional=True,
                           tooltip="Tag this dataset's images instead of a folder; its captions are replaced by the "
                                   "tags."),
                node_input(io.Boolean, "general_mcut", default=False, optional=True, advanced=True,
                           tooltip="Pick the general threshold per image with MCut (largest gap)."),
                node_input(io.Boolean, "character_mcut", default=False, optional=True, advanced=True,
                           tooltip="Pick the character threshold per image with MCut (at least 0.15)."),
                node_input(io.Boolean, "include_rating", default=False, optional=True, advanced=True,
                           tooltip="Add the most likely rating tag."),
                node_input(io.String, "exclude", default="", multiline=True, optional=True,
                           tooltip="Tags never written (underscores or spaces both match)."),
                node_input(io.Boolean, "replace_underscores", default=True, optional=True, advanced=True,
                           tooltip="red_dress -> red dress (kaomoji like ^_^ stay)."),
                caption_extension_input(),
                node_input(io.Int, "batch_size", default=8, min=1, max=256, optional=True, advanced=True,
                           tooltip="Images per inference batch."),
                offline_input(),
            ],
            outputs=[output(io.String, "captions"), output(Dataset, "dataset")])

    @classmethod
    def execute(cls, model, folder, general_threshold, character_threshold, caption_mode, dataset=None,
                general_mcut=False, character_mcut=False, include_rating=False, exclude="", replace_underscores=True,
                caption_extension=".txt", batch_size=8, offline=False):
        # The folder and the caption files are checked before anything loads (core.paths: the one path policy).
        if caption_mode != "none":
            caption_extension = check_caption_extension(caption_extension)
        paths = ([e.path for e in dataset.images] if dataset is not None
                 else images_under(Path(host.resolve_input_path(folder, "Kiln Tagger folder")), "Kiln Tagger"))
        files = ensure_model(model, _model_dirs(), offline=offline)
        labels = Labels.from_file(files.tags)
        settings = TagSettings(general_threshold, character_threshold, general_mcut, character_mcut, include_rating,
                               parse_patterns(exclude), replace_underscores)
        pbar = host.progress_bar(len(paths))

        def progress(n):
            host.throw_if_interrupted()
            pbar.update(n)
        results = tag_images(paths, files.model, labels, settings, batch_size=batch_size, progress=progress,
                             cuda_usable=torch.cuda.is_available())
        captions = {r.path: r.caption for r in results}
        if caption_mode != "none":
            captions, written = write_captions(captions, caption_mode, caption_extension)  # what each file now holds
            log.info("Kiln: tagged %d images, wrote %d caption files (%s)", len(results), written, caption_mode)
        text = "\n".join(f"{p.name}: {c}" for p, c in captions.items())
        out_dataset = dataset.with_captions(captions) if dataset is not None else None
        return io.NodeOutput(text, out_dataset, ui={"text": [text]})


class KilnTagFilter(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="KilnTagFilter", display_name="Kiln Tag Filter", category="Kiln/Tagging",
            description="Prune, replace, dedupe and cap tags; insert a trigger word. Works on text or on a dataset.",
            inputs=[
                node_input(io.String, "remove", default="", multiline=True,
                           tooltip="Tags to prune: exact (underscores or spaces), with * wildcards, or a line "
                                   "'re:<regex>'; comma or line separated."),
                node_input(io.Boolean, "remove_metadata_tags", default=True, advanced=True,
                           tooltip="Prune translation_request, commentary, watermark and the like."),
                node_input(io.Boolean, "character_preset", default=False,
                           tooltip="The guides' character rules: prune eye colour, hair colour and hair length; keep "
                                   "hairstyle."),
                node_input(io.String, "trigger", default="",
                           tooltip="Activation tag inserted first (set keep_tokens=1 on the dataset to keep it "
                                   "there)."),
                node_input(io.String, "replace", default="", multiline=True,
                           tooltip="old=new pairs, e.g. red_dress=zyxdress."),
                node_input(io.Boolean, "drop_implied", default=True, advanced=True,
                           tooltip="Drop a tag when a more specific one is present (shirt with white shirt)."),
                node_input(io.Int, "max_tags", default=0, min=0, max=500, advanced=True,
                           tooltip="Keep at most this many tags after the trigger: the earliest, which in Kiln Tagger "
                                   "captions are the most confident (characters, then general tags by confidence). 0: "
                                   "no cap."),
                _text_input("Captions as text, one per line ('name: tags' lines from the tagger work too)."),
                node_input(Dataset, "dataset", optional=True, tooltip="Filter this dataset's captions."),
                node_input(io.String, "remove_categories", default="", optional=True, advanced=True,
                           tooltip="Categories to prune (general, character, copyright, artist, meta, rating); needs "
                                   "tag_model."),
                node_input(io.String, "tag_model", default="", optional=True, advanced=True,
                           tooltip="Tagger model whose tag CSV gives the categories (a name in models/wd14_tagger)."),
            ],
            outputs=[output(io.String, "text"), output(Dataset, "dataset"), output(io.String, "frequencies"),
                     output(io.Image, "chart")])

    @classmethod
    def execute(cls, remove, remove_metadata_tags, character_preset, trigger, replace, drop_implied, max_tags,
                text=None, dataset=None, remove_categories="", tag_model=""):
        if dataset is None and text is None:
            raise ValueError("Kiln Tag Filter: connect text or a dataset.")
        if dataset is not None and not hasattr(dataset, "map_captions"):
            raise TypeError(f"Kiln Tag Filter: the dataset input ({type(dataset).__name__}) has no map_captions; "
                            "connect a KILN_DATASET from Kiln Load Dataset or Kiln Tagger.")
        spec = TagFilterSpec(remove=parse_patterns(remove), remove_categories=parse_patterns(remove_categories),
                             remove_meta=remove_metadata_tags, character_preset=character_preset, trigger=trigger,
                             replace=parse_replace(replace), drop_implied=drop_implied, max_tags=max_tags)
        categories = None
        if spec.remove_categories:
            if not tag_model.strip():
                raise ValueError("Kiln Tag Filter: remove_categories needs tag_model, the tagger whose tag CSV "
                                 "says which category each tag is in.")
            files = ensure_model(tag_model.strip(), _model_dirs(), offline=True)
            categories = Labels.from_file(files.tags).category_of()

        def prune(caption: str) -> str:
            return apply_filter(caption, spec, categories)

        heads, before_text = _captions_in(text, None)
        after_text = [prune(c) for c in before_text]
        out_text = "\n".join(h + c for h, c in zip(heads, after_text)) if text is not None else None
        out_dataset = dataset.map_captions(prune) if dataset is not None else None
        _, before = _captions_in(text, dataset)
        _, after = _captions_in(out_text, out_dataset)
        if out_text is None:
            out_text = "\n".join(f"{e.path.name}: {e.caption}" for e in out_dataset.images)
        report = comparison_text(before, after)
        chart = host.image_batch(comparison_chart(before, after))
        return io.NodeOutput(out_text, out_dataset, report, chart, ui={"text": [report]})


class KilnTagFrequency(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="KilnTagFrequency", display_name="Kiln Tag Frequency", category="Kiln/Tagging",
            is_output_node=True,   # shows its table in the UI
            description="How many captions hold each tag, as text and as a bar chart.",
            inputs=[
                node_input(io.Int, "top", default=30, min=1, max=200,
                           tooltip="How many of the most frequent tags to list and draw."),
                _text_input("Captions as text, one per line ('name: tags' lines work too)."),
                node_input(Dataset, "dataset", optional=True, tooltip="Count this dataset's captions."),
            ],
            outputs=[output(io.String, "frequencies"), output(io.Image, "chart")])

    @classmethod
    def execute(cls, top, text=None, dataset=None):
        if text is None and dataset is None:
            raise ValueError("Kiln Tag Frequency: connect text or a dataset.")
        _, captions = _captions_in(text, dataset)
        counts = frequency(captions)
        report = f"{len(captions)} captions, {len(counts)} distinct tags\n{frequency_text(counts, top)}"
        return io.NodeOutput(report, host.image_batch(frequency_chart(captions, rows=top)), ui={"text": [report]})


NODES = (KilnTagger, KilnTagFilter, KilnTagFrequency)
