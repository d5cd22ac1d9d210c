"""Config fields that carry their own help text and limits, as PEFT's ``LoraConfig`` fields do.

A value's default, its range and the sentence that explains it are written once, on the dataclass field;
the nodes build their inputs from it (nodes/schema.py), so a default can never differ between the graph,
the command line and the trainer.
"""
from __future__ import annotations

from dataclasses import Field, field


def setting(default, help: str, *, min=None, max=None, step=None, choices=None) -> Field:  # noqa: A002
    """A dataclass field whose metadata holds ``help`` and, where given, ``min``/``max``/``step``/``choices``."""
    meta = {"help": help}
    for key, value in (("min", min), ("max", max), ("step", step), ("choices", choices)):
        if value is not None:
            meta[key] = tuple(value) if key == "choices" else value
    return field(default=default, metadata=meta)
