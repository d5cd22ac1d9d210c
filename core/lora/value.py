"""KILN_LORA: the one in-memory LoRA value that travels between Kiln nodes.

Tensors are keyed with kohya names (``lora_unet_..``/``lora_te_..`` module names followed by
``.lora_up.weight``, ``.lora_down.weight``, ``.alpha``, or LyCORIS suffixes such as ``.hada_w1_a``),
so saving is a plain write and every tool sees one layout.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Mapping

import torch


def module_groups(tensors: Mapping[str, torch.Tensor]) -> dict[str, dict[str, torch.Tensor]]:
    """Group ``module.suffix`` keys by module: {module: {suffix: tensor}}.

    The module name is everything before the first '.', which holds for kohya names
    (module paths there use '_' instead of '.').
    """
    groups: dict[str, dict[str, torch.Tensor]] = {}
    for key, tensor in tensors.items():
        module, _, suffix = key.partition(".")
        groups.setdefault(module, {})[suffix] = tensor
    return groups


@dataclass(frozen=True)
class KilnLora:
    """A LoRA as named tensors (kohya keys) plus string metadata (``ss_*`` and friends)."""

    tensors: Mapping[str, torch.Tensor]
    metadata: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self):
        # Freeze the containers so a value shared by two nodes cannot be changed under the other.
        object.__setattr__(self, "tensors", MappingProxyType(dict(self.tensors)))
        object.__setattr__(self, "metadata", MappingProxyType({str(k): str(v) for k, v in self.metadata.items()}))

    @property
    def modules(self) -> dict[str, dict[str, torch.Tensor]]:
        return module_groups(self.tensors)

    def with_metadata(self, **updates: object) -> "KilnLora":
        meta = dict(self.metadata)
        meta.update({k: str(v) for k, v in updates.items()})
        return KilnLora(self.tensors, meta)

    def to(self, dtype: torch.dtype) -> "KilnLora":
        """Cast floating tensors (alpha stays as stored), e.g. to save in fp16."""
        out = {k: (v.to(dtype) if v.is_floating_point() and not k.endswith(".alpha") else v)
               for k, v in self.tensors.items()}
        return KilnLora(out, self.metadata)

    def __repr__(self) -> str:
        return f"KilnLora({len(self.modules)} modules, {len(self.tensors)} tensors)"
