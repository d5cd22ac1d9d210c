"""Kiln Export: the graph's training recipe as config files for kohya sd-scripts, musubi-tuner, accelerate
and diffusion-pipe (to train the same LoRA on several GPUs or on models too big for one)."""
from __future__ import annotations

import logging
import re
from pathlib import Path

from comfy_api.latest import io

from .. import host
from ..core.export import FORMATS, write_export
from ..host.export import family_of_model, recipe
from .schema import node_input, output

log = logging.getLogger("kiln")


def _folder_name(name: str) -> str:
    cleaned = re.sub(r"[^\w\-. ]+", "_", name).strip(" .")
    if not cleaned:
        raise ValueError(f"Kiln Export: {name!r} is not usable as a folder name; use letters, digits, '-' or '_'")
    return cleaned[:120]


class KilnExport(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="KilnExport", display_name="Kiln Export (kohya / musubi / diffusion-pipe)",
            category="Kiln/Training", is_output_node=True,
            description="Write the Train node's dataset, network, optimizer and schedule as kohya sd-scripts / "
                        "musubi-tuner TOML, an accelerate config and a diffusion-pipe TOML. Run only this node "
                        "(queue selected output nodes) to export without training.",
            inputs=[
                node_input(io.Model, "model", tooltip="The model the Train node trains (wire the same loader): its "
                                                      "family picks the scripts."),
                node_input(io.Combo, "formats", options=["all", *FORMATS], default="all",
                           tooltip="Which trainer's files to write; a family a trainer does not support is skipped "
                                   "with a note."),
                node_input(io.String, "folder", default="kiln_export",
                           tooltip="Folder under ComfyUI's output folder (a subfolder per output name is made)."),
                node_input(io.Int, "num_gpus", default=1, min=1, max=1024,
                           tooltip="Processes per machine in the accelerate config."),
                node_input(io.Int, "num_machines", default=1, min=1, max=1024, advanced=True,
                           tooltip="Machines in the accelerate config."),
                node_input(io.Int, "pipeline_stages", default=1, min=1, max=64, advanced=True,
                           tooltip="diffusion-pipe: GPUs one model is split across (for models too big for one GPU)."),
                node_input(io.String, "train_node", default="", optional=True, advanced=True,
                           tooltip="Id of the Train node to export when the graph has several."),
            ],
            outputs=[output(io.String, "folder", "The folder the files were written to.")])

    @classmethod
    def execute(cls, model, formats, folder, num_gpus, num_machines, pipeline_stages, train_node=""):
        prompt = cls.hidden.prompt if cls.hidden is not None else None
        if not prompt:
            raise ValueError("Kiln Export reads the workflow it runs in; the host gave it none (run it in a graph)")
        r = recipe(prompt, family_of_model(model), train_node.strip() or None)
        target = host.output_dir() / _folder_name(folder.strip() or "kiln_export") / _folder_name(r.output_name)
        paths = write_export(r, target, FORMATS if formats == "all" else (formats,), num_gpus, num_machines,
                             pipeline_stages)
        log.info("Kiln: exported %s (%s) to %s", r.output_name, r.family, target)
        out = host.output_dir()
        return io.NodeOutput(str(target), ui={
            "text": [str(target)] + [p.name for p in paths],
            "kiln_files": [{"filename": p.name, "subfolder": str(Path(p).parent.relative_to(out)), "type": "output"}
                           for p in paths]})


NODES = (KilnExport,)
