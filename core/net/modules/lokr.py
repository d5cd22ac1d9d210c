"""LoKr: delta = kron(w1, w2) * scale, w1 the small factor, w2 the large one, each full or low rank.

Factorisation, the choice of which factor is low rank, and the Kronecker rebuild are lycoris-lora's
(``lycoris.functional.general.factorization``, ``lycoris.functional.lokr.make_kron``): w2 is low rank when
rank < max(its sides) / 2, w1 only with ``decompose_both``. The host scales by alpha / rank only when a
factor is low rank and by 1 otherwise, so a network with both factors full trains at scale 1 and saves
alpha = rank (LyCORIS does the same).

One departure from LyCORIS: on a conv, a low-rank w2 is saved with ``lokr_w2_b`` 2-D as (rank, in * kh * kw).
LyCORIS keeps it 4-D, which the host's ``torch.mm(w2_a, w2_b)`` rejects (the layer would be skipped with an
error in the log); the 2-D form gives the same kron layout and loads in ComfyUI and A1111.
File keys lokr_w1 (or lokr_w1_a/_b), lokr_w2 (or lokr_w2_a/_b), alpha.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
from lycoris.functional.general import factorization
from lycoris.functional.lokr import make_kron

from ...lora.algorithms import LoKrLayout
from ..registry import register_algorithm
from .base import kaiming_uniform_
from .weighted import DeltaWeightModule, require


@register_algorithm("lokr")
class LoKrModule(DeltaWeightModule):
    layout = LoKrLayout

    def __init__(self, name, base, rank, alpha, generator=None, spec=None, **kw):
        super().__init__(name, base, rank, alpha, spec=spec, **kw)
        factor = spec.factor if spec is not None else -1
        both = spec.decompose_both if spec is not None else False
        self.shape = tuple(base.weight.shape)
        kernel = self.shape[2:]
        out_m, out_n = factorization(self.shape[0], factor)
        in_m, in_n = factorization(self.shape[1], factor)
        self.w2_shape = (out_n, in_n) + kernel               # lokr_w2's shape in the file
        w2_cols = in_n * math.prod(kernel)
        self.w1_low = both and rank < max(out_m, in_m) / 2
        self.w2_low = rank < max(out_n, in_n) / 2
        # Init as LyCORIS: w1 (or its factors) and w2_a random, w2 (or w2_b) zero: starts at the base model.
        if self.w1_low:
            self.lokr_w1_a = nn.Parameter(kaiming_uniform_(torch.empty(out_m, rank), generator))
            self.lokr_w1_b = nn.Parameter(kaiming_uniform_(torch.empty(rank, in_m), generator))
        else:
            self.lokr_w1 = nn.Parameter(kaiming_uniform_(torch.empty(out_m, in_m), generator))
        if self.w2_low:
            self.lokr_w2_a = nn.Parameter(kaiming_uniform_(torch.empty(out_n, rank), generator))
            self.lokr_w2_b = nn.Parameter(torch.zeros(rank, w2_cols))
        else:
            self.lokr_w2 = nn.Parameter(torch.zeros(out_n, w2_cols))
        if not self.decomposed:
            self.alpha = float(rank)

    @property
    def decomposed(self) -> bool:
        return self.w1_low or self.w2_low

    def _keys(self) -> tuple[str, ...]:
        return LoKrLayout.keys_for(self.w1_low, self.w2_low)

    def delta_weight(self):
        w1 = self.lokr_w1_a @ self.lokr_w1_b if self.w1_low else self.lokr_w1
        w2 = self.lokr_w2_a @ self.lokr_w2_b if self.w2_low else self.lokr_w2
        # Both factors 2-D, as the host forms them for a low-rank w2; for a full conv w2 the host uses the
        # 4-D w2 and a 4-D w1, whose kron is the same tensor after the reshape.
        return make_kron(w1, w2, self.scale).reshape(self.shape)

    def export(self):
        out = {k: getattr(self, k).detach().clone() for k in self._keys()}
        if "lokr_w2" in out:
            out["lokr_w2"] = out["lokr_w2"].reshape(self.w2_shape)
        out["alpha"] = self.alpha_tensor()
        return out

    def load_exported(self, tensors):
        keys = self._keys()
        require(tensors, keys + ("alpha",), self.name, "LoKr")
        with torch.no_grad():
            for k in keys:
                p = getattr(self, k)
                if tensors[k].numel() != p.numel():
                    raise ValueError(f"{self.name}.{k}: the file has shape {tuple(tensors[k].shape)}, this "
                                     f"network {tuple(p.shape)}; use the LoKr factor and rank it was trained with.")
                p.copy_(tensors[k].reshape(p.shape))
            self.alpha = float(tensors["alpha"])
