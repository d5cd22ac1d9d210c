"""Kiln Export: the graph's training recipe as config files for kohya sd-scripts, musubi-tuner, accelerate
and diffusion-pipe (to train the same LoRA on several GPUs or on models too big for one)."""
from __future__ import annotations

import logging
import re
from pathlib import Path

from .. import host
from ..core.export import FORMATS, write_export
from ..host.export import family_of_model, recipe

log = logging.getLogger("kiln")


def _folder_name(name: str) -> str:
    cleaned = re.sub(r"[^\w\-. ]+", "_", name).strip(" .")
    if not cleaned:
        raise ValueError(f"Kiln Export: {name!r} is not usable as a folder name; use letters, digits, '-' or '_'")
    return cleaned[:120]


class KilnExport:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model": ("MODEL", {"tooltip": "The model the Train node trains (wire the same loader): its family picks the scripts."}),
            "formats": (["all", *FORMATS], {"default": "all", "tooltip": "Which trainer's files to write; a family a trainer does not support is skipped with a note."}),
            "folder": ("STRING", {"default": "kiln_export", "tooltip": "Folder under ComfyUI's output folder (a subfolder per output name is made)."}),
            "num_gpus": ("INT", {"default": 1, "min": 1, "max": 1024, "tooltip": "Processes per machine in the accelerate config."}),
            "num_machines": ("INT", {"default": 1, "min": 1, "max": 1024, "tooltip": "Machines in the accelerate config."}),
            "pipeline_stages": ("INT", {"default": 1, "min": 1, "max": 64, "tooltip": "diffusion-pipe: GPUs one model is split across (for models too big for one GPU)."}),
        }, "optional": {
            "train_node": ("STRING", {"default": "", "tooltip": "Id of the Train node to export when the graph has several."}),
        }, "hidden": {"prompt": "PROMPT"}}

    RETURN_TYPES = ("STRING",)
    RETURN_NAMES = ("folder",)
    OUTPUT_TOOLTIPS = ("The folder the files were written to.",)
    FUNCTION = "export"
    OUTPUT_NODE = True
    CATEGORY = "Kiln/Training"
    DESCRIPTION = ("Write the Train node's dataset, network, optimizer and schedule as kohya sd-scripts / "
                   "musubi-tuner TOML, an accelerate config and a diffusion-pipe TOML. Run only this node "
                   "(queue selected output nodes) to export without training.")

    def export(self, model, formats, folder, num_gpus, num_machines, pipeline_stages, train_node="", prompt=None):
        if not prompt:
            raise ValueError("Kiln Export reads the workflow it runs in; the host gave it none")
        r = recipe(prompt, family_of_model(model), train_node.strip() or None)
        target = host.output_dir() / _folder_name(folder.strip() or "kiln_export") / _folder_name(r.output_name)
        paths = write_export(r, target, FORMATS if formats == "all" else (formats,), num_gpus, num_machines,
                             pipeline_stages)
        log.info("Kiln: exported %s (%s) to %s", r.output_name, r.family, target)
        out = host.output_dir()
        return {"ui": {"text": [str(target)] + [p.name for p in paths],
                       "kiln_files": [{"filename": p.name, "subfolder": str(Path(p).parent.relative_to(out)),
                                       "type": "output"} for p in paths]},
                "result": (str(target),)}


NODE_CLASS_MAPPINGS = {"KilnExport": KilnExport}
NODE_DISPLAY_NAME_MAPPINGS = {"KilnExport": "Kiln Export (kohya / musubi / diffusion-pipe)"}
