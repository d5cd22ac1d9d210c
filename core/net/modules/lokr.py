"""LoKr: delta = kron(w1, w2_a @ w2_b) * alpha / rank. w1 is the small full factor, w2 the large one in
low rank (when the rank is below its size; else stored full and unscaled, as the host reads it). File keys
lokr_w1, lokr_w2_a/lokr_w2_b (or lokr_w2), alpha."""
from __future__ import annotations

import torch
import torch.nn as nn

from ..registry import register_algorithm
from .weighted import DeltaWeightModule, kaiming_


def factorization(dimension: int, factor: int = -1) -> tuple[int, int]:
    """(m, n) with m * n == dimension and m <= n, m as close to ``factor`` (or sqrt) as divisors allow."""
    if factor > 0 and dimension % factor == 0 and dimension >= factor * factor:
        m, n = factor, dimension // factor
        return (m, n) if m <= n else (n, m)
    limit = dimension if factor < 0 else factor
    m, n = 1, dimension
    for cand in range(2, int(dimension ** 0.5) + 1):
        if dimension % cand == 0 and cand <= limit:
            m, n = cand, dimension // cand
    return m, n


@register_algorithm("lokr")
class LoKrModule(DeltaWeightModule):
    def __init__(self, name, base, rank, alpha, generator=None, spec=None, **kw):
        super().__init__(name, base, rank, alpha, spec=spec, **kw)
        factor = spec.factor if spec is not None else -1
        self.shape = tuple(base.weight.shape)
        out_m, out_n = factorization(self.shape[0], factor)
        in_m, in_n = factorization(self.shape[1], factor)
        k = self.shape[2:]
        self.w1_shape = (out_m, in_m)
        w2_cols = in_n * int(torch.tensor(k).prod()) if k else in_n
        self.w2_shape = (out_n, in_n) + tuple(k)
        self.lokr_w1 = nn.Parameter(kaiming_(torch.empty(out_m, in_m), generator))
        self.decomposed = rank < min(out_n, w2_cols) // 2
        if self.decomposed:
            self.lokr_w2_a = nn.Parameter(kaiming_(torch.empty(out_n, rank), generator))
            self.lokr_w2_b = nn.Parameter(torch.zeros(rank, w2_cols))
        else:
            self.lokr_w2 = nn.Parameter(torch.zeros(out_n, w2_cols))

    def w2(self):
        return self.lokr_w2_a @ self.lokr_w2_b if self.decomposed else self.lokr_w2

    def delta_weight(self):
        # The host forms kron(w1, w2) with w2 as a 2-D matrix and reshapes to the weight's shape.
        scale = self.scale if self.decomposed else 1.0
        return (torch.kron(self.lokr_w1, self.w2()) * scale).reshape(self.shape)

    def export(self):
        out = {"lokr_w1": self.lokr_w1.detach().clone(), "alpha": self.alpha.detach().clone()}
        if self.decomposed:
            out["lokr_w2_a"] = self.lokr_w2_a.detach().clone()
            out["lokr_w2_b"] = self.lokr_w2_b.detach().clone()
        else:
            out["lokr_w2"] = self.lokr_w2.detach().clone().reshape(self.w2_shape)
        return out

    def load_exported(self, tensors):
        with torch.no_grad():
            self.lokr_w1.copy_(tensors["lokr_w1"])
            if self.decomposed:
                self.lokr_w2_a.copy_(tensors["lokr_w2_a"])
                self.lokr_w2_b.copy_(tensors["lokr_w2_b"])
            else:
                self.lokr_w2.copy_(tensors["lokr_w2"].reshape(self.lokr_w2.shape))
            self.alpha.fill_(float(tensors["alpha"]))
