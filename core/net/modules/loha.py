"""LoHa: delta = (w1a @ w1b) * (w2a @ w2b) * alpha / rank (Hadamard product of two low-rank matrices).
File keys hada_w1_a/hada_w1_b/hada_w2_a/hada_w2_b/alpha, as LyCORIS writes and the host loads."""
from __future__ import annotations

import torch
import torch.nn as nn

from ..registry import register_algorithm
from .weighted import DeltaWeightModule


@register_algorithm("loha")
class LoHaModule(DeltaWeightModule):
    def __init__(self, name, base, rank, alpha, generator=None, **kw):
        super().__init__(name, base, rank, alpha, **kw)
        self.shape = tuple(base.weight.shape)
        out_dim, in_flat = self.shape[0], int(torch.tensor(self.shape[1:]).prod())
        # LyCORIS's init: w2a at zero so training starts from the base model; the rest random.
        self.hada_w1_a = nn.Parameter(torch.randn(out_dim, rank, generator=generator) * 0.1)
        self.hada_w1_b = nn.Parameter(torch.randn(rank, in_flat, generator=generator))
        self.hada_w2_a = nn.Parameter(torch.zeros(out_dim, rank))
        self.hada_w2_b = nn.Parameter(torch.randn(rank, in_flat, generator=generator))

    def delta_weight(self):
        m1 = self.hada_w1_a @ self.hada_w1_b
        m2 = self.hada_w2_a @ self.hada_w2_b
        return (m1 * m2 * self.scale).reshape(self.shape)

    def export(self):
        out = {k: getattr(self, k).detach().clone() for k in ("hada_w1_a", "hada_w1_b", "hada_w2_a", "hada_w2_b")}
        out["alpha"] = self.alpha.detach().clone()
        return out

    def load_exported(self, tensors):
        with torch.no_grad():
            for k in ("hada_w1_a", "hada_w1_b", "hada_w2_a", "hada_w2_b"):
                getattr(self, k).copy_(tensors[k].reshape(getattr(self, k).shape))
            self.alpha.fill_(float(tensors["alpha"]))
