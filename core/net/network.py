"""A Network: the set of adapters for one model, attached by forward hooks and exported with kohya names."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import torch
import torch.nn as nn

from .registry import algorithm_class
from .spec import NetworkSpec
from .targets import is_conv3x3, wanted


@dataclass(frozen=True)
class TargetLayer:
    kohya_name: str        # e.g. lora_unet_down_blocks_0_attentions_0_proj_in
    host_name: str         # e.g. diffusion_model.input_blocks.1.1.proj_in
    module: nn.Module
    is_text_encoder: bool
    block: str = ""        # block name for block-wise weights (see core.net.blocks)
    family: str = ""       # model family string (core.net.families); "" = SD-family naming


class Network(nn.Module):
    def __init__(self, spec: NetworkSpec, layers: Iterable[TargetLayer], device=None):
        super().__init__()
        self.spec = spec
        cls = algorithm_class(spec.algorithm)
        gen = torch.Generator().manual_seed(spec.init_seed)
        rank_weights = dict(spec.block_rank_weights)
        self.adapters = nn.ModuleDict()
        self._layers: dict[str, TargetLayer] = {}
        layers = list(layers)
        for layer in layers:
            if layer.is_text_encoder and not spec.train_text_encoder:
                continue
            if not layer.is_text_encoder and not spec.train_unet:
                continue
            if not wanted(layer.host_name, layer.module, spec.targets, layer.family):
                continue
            rank, alpha = spec.rank_for(is_conv3x3(layer.module), rank_weights.get(layer.block, 1.0))
            if rank <= 0:
                continue
            adapter = cls(layer.kohya_name, layer.module, rank, alpha, generator=gen, spec=spec,
                          dropout=spec.dropout, rank_dropout=spec.rank_dropout, module_dropout=spec.module_dropout)
            self.adapters[layer.kohya_name] = adapter
            self._layers[layer.kohya_name] = layer
        if not self.adapters:
            families = sorted({layer.family for layer in layers if layer.family})
            raise ValueError(f"The network selects no layers (targets={spec.targets!r}, family={families}, "
                             f"unet={spec.train_unet}, text encoder={spec.train_text_encoder}). "
                             "Widen the targets or enable a model part.")
        if device is not None:
            self.to(device)
        self._hooks = []

    def attach(self) -> None:
        """Hook every adapter onto its base layer; ``detach`` (or leaving the ``with``) removes them."""
        if self._hooks:
            return
        for name, adapter in self.adapters.items():
            base = self._layers[name].module
            self._hooks.append(base.register_forward_hook(_make_hook(adapter)))

    def detach(self) -> None:
        for h in self._hooks:
            h.remove()
        self._hooks = []

    def __enter__(self):
        self.attach()
        return self

    def __exit__(self, *exc):
        self.detach()

    def export(self, dtype: torch.dtype | None = None) -> dict[str, torch.Tensor]:
        out = {}
        for name, adapter in self.adapters.items():
            for suffix, t in adapter.export().items():
                t = t.detach().to("cpu")
                if dtype is not None and t.is_floating_point() and suffix != "alpha":
                    t = t.to(dtype)
                out[f"{name}.{suffix}"] = t.contiguous()
        return out

    def load_exported(self, tensors: dict[str, torch.Tensor]) -> None:
        from ..lora.value import module_groups
        groups = module_groups({k: v for k, v in tensors.items() if not k.startswith("kiln_ema.")})
        missing = [n for n in self.adapters if n not in groups]
        if missing:
            raise ValueError(f"The saved network lacks {len(missing)} modules this network trains "
                             f"(first: {missing[0]}); was it made with other targets or another base model?")
        for name, adapter in self.adapters.items():
            adapter.load_exported(groups[name])

    def param_groups(self, unet_lr: float, text_encoder_lr: float | None = None) -> list[dict]:
        lr_weights = dict(self.spec.block_lr_weights)
        groups: dict[tuple[bool, float], list] = {}
        for name, adapter in self.adapters.items():
            layer = self._layers[name]
            base_lr = (text_encoder_lr if text_encoder_lr is not None else unet_lr) if layer.is_text_encoder else unet_lr
            lr = base_lr * lr_weights.get(layer.block, 1.0)
            groups.setdefault((layer.is_text_encoder, lr), []).extend(adapter.trainable_parameters())
        return [{"params": ps, "lr": lr, "initial_lr": lr, "name": "text_encoder" if te else "unet"}
                for (te, lr), ps in groups.items() if ps and lr > 0]

    def num_trainable(self) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad)


def _make_hook(adapter):
    def hook(module, inputs, output):
        return adapter(inputs[0], output, module)
    return hook
