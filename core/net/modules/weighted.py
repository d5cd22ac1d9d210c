"""Shared base for algorithms that build a whole delta weight (LoHa, LoKr, full, IA3): the delta is formed
each step and applied in bypass (F.linear / F.conv2d with the delta only), never merged into the base."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .base import AdapterModule


class DeltaWeightModule(AdapterModule):
    def delta_weight(self) -> torch.Tensor:
        """The delta in the base weight's shape, scale included (exactly what the host adds)."""
        raise NotImplementedError

    def delta_forward(self, x, base):
        x = self._apply_dropout(x)
        w = self._drop_rows(self.delta_weight()).to(x.dtype)
        if self.is_conv:
            return F.conv2d(x, w, None, self.stride, self.padding, self.dilation, self.groups)
        return F.linear(x, w)

    def _drop_rows(self, w: torch.Tensor) -> torch.Tensor:
        """Rank dropout for whole-weight algorithms, as LyCORIS does it: drop output rows of the delta."""
        if not (self.training and self.rank_dropout):
            return w
        keep = (torch.rand(w.shape[0], device=w.device) > self.rank_dropout).to(w.dtype)
        return w * keep.view(-1, *([1] * (w.dim() - 1))) / (1.0 - self.rank_dropout)


def require(tensors: dict, keys, module_name: str, algorithm: str) -> None:
    """A clear error when a file's layout does not match the network being loaded into."""
    missing = [k for k in keys if k not in tensors]
    if missing:
        raise ValueError(f"{module_name}: the saved tensors lack {missing} (have {sorted(tensors)}); the file "
                         f"was not made by a {algorithm} network with these settings (rank, factor, algorithm).")

