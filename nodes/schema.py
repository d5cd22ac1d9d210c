"""Building blocks for Kiln's V3 node schemas (comfy_api.latest): the pack's own socket types, inputs read off a
config dataclass field (its default, limits and help text, see core/fields.py), and the one host difference
the schemas meet: the ``advanced`` flag, which the 2026 host's inputs take and the 2025-10 host's do not."""
from __future__ import annotations

import dataclasses
import inspect

from comfy_api.latest import io

Dataset = io.Custom("KILN_DATASET")
Network = io.Custom("KILN_NETWORK")
Optimizer = io.Custom("KILN_OPTIMIZER")
Objective = io.Custom("KILN_OBJECTIVE")
Samples = io.Custom("KILN_SAMPLES")
Lora = io.Custom("KILN_LORA")
Loss = io.Custom("KILN_LOSS")


def takes_advanced(kind) -> bool:
    """Whether this host's ``kind.Input`` accepts ``advanced`` (read from its signature, not a version)."""
    return "advanced" in inspect.signature(kind.Input.__init__).parameters


def node_input(kind, id: str, *, advanced: bool = False, **options):  # noqa: A002 - the host's own name
    """A socket or widget input, ``kind.Input(id, **options)``. ``advanced=True`` folds it away where the host's
    frontend can (the 2026 one); it is left out where the host's Input has no such argument (the 2025-10 host's:
    there every input simply shows)."""
    if advanced and takes_advanced(kind):
        options["advanced"] = True
    return kind.Input(id, **options)


def config_field(config, name: str) -> dataclasses.Field:
    for f in dataclasses.fields(config):
        if f.name == name:
            return f
    raise KeyError(f"{config.__name__} has no field {name!r}")


def help_of(config, name: str) -> str:
    return config_field(config, name).metadata["help"]


def field_default(config, name: str):
    f = config_field(config, name)
    return f.default_factory() if f.default is dataclasses.MISSING else f.default


def from_field(config, name: str, *, id: str | None = None, options=None, **overrides):  # noqa: A002
    """An input whose default, min/max/step and tooltip are those of ``config``'s field ``name`` (the input may
    be named differently: ``id``). Choices come from ``options`` or the field's ``choices``; the input kind
    follows the default's type. ``overrides`` (e.g. ``optional``, ``advanced``, ``round``) pass through."""
    meta = config_field(config, name).metadata
    if "help" not in meta:
        raise ValueError(f"{config.__name__}.{name} has no help text; declare it with core.fields.setting")
    default = field_default(config, name)
    kw = {"default": default, "tooltip": meta["help"]}
    choices = options if options is not None else meta.get("choices")
    if choices is not None:
        kind = io.Combo
        kw["options"] = list(choices)
    else:
        kind = {bool: io.Boolean, int: io.Int, float: io.Float, str: io.String}[type(default)]
        kw.update({k: meta[k] for k in ("min", "max", "step") if k in meta})
    kw.update(overrides)
    return node_input(kind, id or name, **kw)


# Inputs the labelling nodes (Kiln Tagger, Kiln Captioner) share, in the same words.
def image_folder_input(verb: str):
    return node_input(io.String, "folder", default="",
                      tooltip=f"Folder of images to {verb} (subfolders included); relative to ComfyUI's input "
                              "folder. Ignored when a dataset is connected.")


def caption_mode_input(tooltip: str):
    return node_input(io.Combo, "caption_mode", options=["overwrite", "append", "keep", "none"], default="overwrite",
                      tooltip=tooltip)


def caption_extension_input():
    return node_input(io.String, "caption_extension", default=".txt", optional=True, advanced=True,
                      tooltip="Caption file extension.")


def offline_input():
    return node_input(io.Boolean, "offline", default=False, optional=True, advanced=True,
                      tooltip="Never download; a missing model is an error that says where to put it.")


def output(kind, name: str, tooltip: str | None = None):
    """An output shown (and saved in workflows) under ``name``, as the classic nodes' RETURN_NAMES did."""
    return kind.Output(display_name=name, tooltip=tooltip)


def config_values(config, values: dict, renamed: dict | None = None) -> dict:
    """The inputs in ``values`` that are fields of ``config`` (input names mapped through ``renamed``), for
    ``config(**...)``: an input a saved workflow lacks keeps the field's default, written once on the field."""
    renamed = renamed or {}
    names = {f.name for f in dataclasses.fields(config)}
    return {renamed.get(k, k): v for k, v in values.items() if renamed.get(k, k) in names}
