"""Captioning node: a vision-language model (transformers) writes a dataset's captions, batched, with the
trigger word first and optionally combined with tags."""
from __future__ import annotations

import logging
from pathlib import Path

from comfy_api.latest import io

from .. import host
from ..core.paths import check_caption_extension
from ..core.caption.combine import COMBINE_MODES, combine_caption
from ..core.caption.models import HUB_MODELS, ensure_model, local_names
from ..core.caption.instructions import TEMPLATES
from ..core.caption.vlm import CaptionSettings, Captioner, caption_images
from ..core.data.scan import images_under
from ..core.tags.tagger import write_captions
from ..host import captioning as host_captioning
from .schema import (Dataset, caption_extension_input, caption_mode_input, image_folder_input, node_input,
                     offline_input, output)

log = logging.getLogger("kiln")
MODELS_KEY = "LLM"   # models/LLM: where the common Florence-2, JoyCaption and Qwen-VL nodes keep theirs


def _model_dirs() -> list[Path]:
    host.register_model_folder(MODELS_KEY, "LLM", {".safetensors", ".json"})
    return host.model_folder_paths(MODELS_KEY)


def _tags_by_name(text: str) -> dict[str, str]:
    """'name: tags' lines (the tagger's text output) -> {file name: tags}."""
    out = {}
    for line in text.splitlines():
        name, sep, tags = line.partition(": ")
        if sep:
            out[name.strip()] = tags.strip()
    return out


class KilnCaptioner(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        models = sorted(set(HUB_MODELS) | set(local_names(_model_dirs())))
        return io.Schema(
            node_id="KilnCaptioner", display_name="Kiln Captioner (VLM)", category="Kiln/Tagging",
            is_output_node=True,   # writing caption files is the point: a graph of this node alone runs it
            description="Caption images with a vision-language model, batched; writes captions beside the images "
                        "and outputs them.",
            inputs=[
                node_input(io.Combo, "model", options=models, default="Florence-2-base",
                           tooltip="A vision-language model folder in models/LLM (Florence-2, JoyCaption, Qwen2.5-VL, "
                                   "Qwen3-VL or any model transformers loads as image-text-to-text); the listed hub "
                                   "models download there once."),
                image_folder_input("caption"),
                node_input(io.Combo, "template", options=list(TEMPLATES), default="training",
                           tooltip="training: plain descriptive sentences for text-to-image training; short: one "
                                   "sentence; long: detailed; booru: tag list; custom: custom_prompt."),
                node_input(io.Int, "max_new_tokens", default=256, min=8, max=2048, advanced=True,
                           tooltip="Longest caption, in tokens."),
                node_input(io.String, "trigger", default="",
                           tooltip="Trigger word put first in every caption (never repeated)."),
                caption_mode_input("Write captions beside the images: overwrite, append, keep existing files, or "
                                   "write nothing (graph only)."),
                node_input(Dataset, "dataset", optional=True,
                           tooltip="Caption this dataset's images instead of a folder; its captions are replaced."),
                node_input(io.String, "custom_prompt", default="", multiline=True, optional=True, advanced=True,
                           tooltip="The instruction when template is custom (for Florence-2: a task token such as "
                                   "<MORE_DETAILED_CAPTION>)."),
                node_input(io.Combo, "combine", options=list(COMBINE_MODES), default="caption only", optional=True,
                           tooltip="Add tags to the caption: from the tags input, else the connected dataset's "
                                   "captions (e.g. from Kiln Tagger)."),
                node_input(io.String, "tags", force_input=True, optional=True,
                           tooltip="Tags as 'name: tags' lines (Kiln Tagger's captions output)."),
                node_input(io.Boolean, "drop_tags_in_caption", default=True, optional=True, advanced=True,
                           tooltip="Leave out tags the caption already says word for word."),
                caption_extension_input(),
                node_input(io.Int, "batch_size", default=4, min=1, max=64, optional=True, advanced=True,
                           tooltip="Images per generate call."),
                node_input(io.Int, "max_image_side", default=768, min=0, max=4096, optional=True, advanced=True,
                           tooltip="Downscale images so the longer side is at most this before the model sees them (0: "
                                   "as is)."),
                offline_input(),
            ],
            outputs=[output(io.String, "captions"), output(Dataset, "dataset")])

    @classmethod
    def execute(cls, model, folder, template, max_new_tokens, trigger, caption_mode, dataset=None,
                custom_prompt="", combine="caption only", tags=None, drop_tags_in_caption=True,
                caption_extension=".txt", batch_size=4, max_image_side=768, offline=False):
        if caption_mode != "none":   # caption files only (core.paths), checked before the model loads
            caption_extension = check_caption_extension(caption_extension)
        paths = ([e.path for e in dataset.images] if dataset is not None
                 else images_under(Path(host.resolve_input_path(folder, "Kiln Captioner folder")), "Kiln Captioner"))
        tag_of: dict[str, str] = {}
        if combine != "caption only":
            if tags is not None:
                tag_of = _tags_by_name(tags)
            elif dataset is not None:
                tag_of = {e.path.name: e.caption for e in dataset.images}
            else:
                raise ValueError("Kiln Captioner: combine needs tags: connect Kiln Tagger's captions to tags, "
                                 "or a dataset whose captions are tags.")
        settings = CaptionSettings(template, custom_prompt, max_new_tokens, max_image_side)
        folder_path = ensure_model(model, _model_dirs(), offline=offline)
        device, dtype = host_captioning.device_and_dtype()
        host_captioning.make_room(host_captioning.weights_bytes(folder_path, dtype), device)
        pbar = host.progress_bar(len(paths))
        captioner = Captioner(folder_path, device, dtype, name=model)
        try:
            results = caption_images(paths, captioner, settings, batch_size=batch_size, progress=pbar.update,
                                     should_stop=host.throw_if_interrupted)
        finally:
            captioner.close()
            host_captioning.release()
        captions = {r.path: combine_caption(r.caption, tag_of.get(r.path.name, ""), combine, trigger,
                                            drop_tags_in_caption) for r in results}
        if caption_mode != "none":
            captions, written = write_captions(captions, caption_mode, caption_extension)  # what each file now holds
            log.info("Kiln: captioned %d images with %s, wrote %d caption files (%s)", len(results), model,
                     written, caption_mode)
        text = "\n".join(f"{p.name}: {c}" for p, c in captions.items())
        out_dataset = dataset.with_captions(captions) if dataset is not None else None
        return io.NodeOutput(text, out_dataset, ui={"text": [text]})


NODES = (KilnCaptioner,)
