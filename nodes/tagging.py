"""Tagging nodes: WD14-style ONNX tagger, tag filter, tag frequency."""
from __future__ import annotations

import logging
from pathlib import Path

import torch

from .. import host
from ..core.data.images import IMAGE_EXTENSIONS
from ..core.tags.filters import TagFilterSpec, apply_filter, parse_patterns, parse_replace
from ..core.tags.frequency import comparison_chart, comparison_text, frequency, frequency_chart, frequency_text
from ..core.tags.hub import HUB_TAGGERS, ensure_model, local_names
from ..core.tags.labels import Labels
from ..core.tags.tagger import TagSettings, tag_images, write_captions

log = logging.getLogger("kiln")
MODELS_KEY = "wd14_tagger"


def _model_dirs() -> list[Path]:
    host.register_model_folder(MODELS_KEY, "wd14_tagger", {".onnx", ".csv"})
    return host.model_folder_paths(MODELS_KEY)



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


class KilnTagger:
    @classmethod
    def INPUT_TYPES(cls):
        models = sorted(set(HUB_TAGGERS) | set(local_names(_model_dirs())))
        return {"required": {
            "model": (models, {"default": "wd-v1-4-moat-tagger-v2", "tooltip": "A SmilingWolf WD14 v2/v3, pixai, Camie or cl_tagger model (downloaded once into models/wd14_tagger), or any local <name>.onnx with its tag file there (<name>.csv, or the model's .json tag file); the format is read from the model."}),
            "folder": ("STRING", {"default": "", "tooltip": "Folder of images to tag (subfolders included); relative to ComfyUI's input folder. Ignored when a dataset is connected."}),
            "general_threshold": ("FLOAT", {"default": 0.35, "min": 0.0, "max": 1.0, "step": 0.01, "tooltip": "Confidence needed for general tags."}),
            "character_threshold": ("FLOAT", {"default": 0.85, "min": 0.0, "max": 1.0, "step": 0.01, "tooltip": "Confidence needed for character tags."}),
            "caption_mode": (["overwrite", "append", "keep", "none"], {"default": "overwrite", "tooltip": "Write captions beside the images: overwrite, append new tags, keep existing files, or write nothing (graph only)."}),
        }, "optional": {
            "dataset": ("KILN_DATASET", {"tooltip": "Tag this dataset's images instead of a folder; its captions are replaced by the tags."}),
            "general_mcut": ("BOOLEAN", {"default": False, "tooltip": "Pick the general threshold per image with MCut (largest gap)."}),
            "character_mcut": ("BOOLEAN", {"default": False, "tooltip": "Pick the character threshold per image with MCut (at least 0.15)."}),
            "include_rating": ("BOOLEAN", {"default": False, "tooltip": "Add the most likely rating tag."}),
            "exclude": ("STRING", {"default": "", "multiline": True, "tooltip": "Tags never written (underscores or spaces both match)."}),
            "replace_underscores": ("BOOLEAN", {"default": True, "tooltip": "red_dress -> red dress (kaomoji like ^_^ stay)."}),
            "caption_extension": ("STRING", {"default": ".txt", "tooltip": "Caption file extension."}),
            "batch_size": ("INT", {"default": 8, "min": 1, "max": 256, "tooltip": "Images per inference batch."}),
            "offline": ("BOOLEAN", {"default": False, "tooltip": "Never download; a missing model is an error that says where to put it."}),
        }}

    RETURN_TYPES = ("STRING", "KILN_DATASET")
    RETURN_NAMES = ("captions", "dataset")
    OUTPUT_NODE = True   # writing caption files is the point: a graph of this node alone runs it
    FUNCTION = "tag"
    CATEGORY = "Kiln/Tagging"
    DESCRIPTION = "Auto-tag images with an ONNX tagger (WD14 v2/v3, pixai, Camie, cl_tagger); writes captions beside the images and outputs them."

    def tag(self, model, folder, general_threshold, character_threshold, caption_mode, dataset=None,
            general_mcut=False, character_mcut=False, include_rating=False, exclude="", replace_underscores=True,
            caption_extension=".txt", batch_size=8, offline=False):
        files = ensure_model(model, _model_dirs(), offline=offline)
        labels = Labels.from_file(files.tags)
        if dataset is not None:
            paths = [e.path for e in dataset.images]
        else:
            root = Path(host.resolve_input_path(folder))
            if not root.is_dir():
                raise ValueError(f"Kiln Tagger: {root} is not a folder; give a folder of images or connect a dataset.")
            paths = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS)
            if not paths:
                raise ValueError(f"Kiln Tagger: no images in {root}.")
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
            ext = caption_extension if caption_extension.startswith(".") else "." + caption_extension
            captions, written = write_captions(captions, caption_mode, ext)   # what each file now holds
            log.info("Kiln: tagged %d images, wrote %d caption files (%s)", len(results), written, caption_mode)
        text = "\n".join(f"{p.name}: {c}" for p, c in captions.items())
        out_dataset = dataset.with_captions(captions) if dataset is not None else None
        return {"ui": {"text": [text]}, "result": (text, out_dataset)}


class KilnTagFilter:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "remove": ("STRING", {"default": "", "multiline": True, "tooltip": "Tags to prune: exact (underscores or spaces), with * wildcards, or a line 're:<regex>'; comma or line separated."}),
            "remove_metadata_tags": ("BOOLEAN", {"default": True, "tooltip": "Prune translation_request, commentary, watermark and the like."}),
            "character_preset": ("BOOLEAN", {"default": False, "tooltip": "The guides' character rules: prune eye colour, hair colour and hair length; keep hairstyle."}),
            "trigger": ("STRING", {"default": "", "tooltip": "Activation tag inserted first (set keep_tokens=1 on the dataset to keep it there)."}),
            "replace": ("STRING", {"default": "", "multiline": True, "tooltip": "old=new pairs, e.g. red_dress=zyxdress."}),
            "drop_implied": ("BOOLEAN", {"default": True, "tooltip": "Drop a tag when a more specific one is present (shirt with white shirt)."}),
            "max_tags": ("INT", {"default": 0, "min": 0, "max": 500, "tooltip": "Keep at most this many tags after the trigger: the earliest, which in Kiln Tagger captions are the most confident (characters, then general tags by confidence). 0: no cap."}),
        }, "optional": {
            "text": ("STRING", {"forceInput": True, "tooltip": "Captions as text, one per line ('name: tags' lines from the tagger work too)."}),
            "dataset": ("KILN_DATASET", {"tooltip": "Filter this dataset's captions."}),
            "remove_categories": ("STRING", {"default": "", "tooltip": "Categories to prune (general, character, copyright, artist, meta, rating); needs tag_model."}),
            "tag_model": ("STRING", {"default": "", "tooltip": "Tagger model whose tag CSV gives the categories (a name in models/wd14_tagger)."}),
        }}

    RETURN_TYPES = ("STRING", "KILN_DATASET", "STRING", "IMAGE")
    RETURN_NAMES = ("text", "dataset", "frequencies", "chart")
    FUNCTION = "filter"
    CATEGORY = "Kiln/Tagging"
    DESCRIPTION = "Prune, replace, dedupe and cap tags; insert a trigger word. Works on text or on a dataset."

    def filter(self, remove, remove_metadata_tags, character_preset, trigger, replace, drop_implied, max_tags,
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
            categories = Labels.from_file(ensure_model(tag_model.strip(), _model_dirs(), offline=True).tags).category_of()

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
        return {"ui": {"text": [report]}, "result": (out_text, out_dataset, report, chart)}


class KilnTagFrequency:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "top": ("INT", {"default": 30, "min": 1, "max": 200, "tooltip": "How many of the most frequent tags to list and draw."}),
        }, "optional": {
            "text": ("STRING", {"forceInput": True, "tooltip": "Captions as text, one per line ('name: tags' lines work too)."}),
            "dataset": ("KILN_DATASET", {"tooltip": "Count this dataset's captions."}),
        }}

    RETURN_TYPES = ("STRING", "IMAGE")
    RETURN_NAMES = ("frequencies", "chart")
    OUTPUT_NODE = True   # shows its table in the UI
    FUNCTION = "count"
    CATEGORY = "Kiln/Tagging"
    DESCRIPTION = "How many captions hold each tag, as text and as a bar chart."

    def count(self, top, text=None, dataset=None):
        if text is None and dataset is None:
            raise ValueError("Kiln Tag Frequency: connect text or a dataset.")
        _, captions = _captions_in(text, dataset)
        counts = frequency(captions)
        report = f"{len(captions)} captions, {len(counts)} distinct tags\n{frequency_text(counts, top)}"
        return {"ui": {"text": [report]}, "result": (report, host.image_batch(frequency_chart(captions, rows=top)))}


NODE_CLASS_MAPPINGS = {"KilnTagger": KilnTagger, "KilnTagFilter": KilnTagFilter, "KilnTagFrequency": KilnTagFrequency}
NODE_DISPLAY_NAME_MAPPINGS = {"KilnTagger": "Kiln Tagger (WD14)", "KilnTagFilter": "Kiln Tag Filter",
                              "KilnTagFrequency": "Kiln Tag Frequency"}
