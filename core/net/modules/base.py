"""The adapter base class: one trainable adapter attached to one base layer (Linear or Conv)."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..targets import is_linear
from .fused import unviewed


class AdapterModule(nn.Module):
    """Attached to a base layer by a forward hook; ``forward(x, base_out)`` returns the adapted output.

    Subclasses implement ``delta_forward`` (bypass: added to the base output without touching the base
    weight, so no gradient for the big matrix is ever formed) and ``export`` (the tensors as the host and
    kohya/LyCORIS tools load them, without the module-name prefix).
    """

    algorithm: str = ""
    # The file layout this algorithm saves (core/lora/algorithms.py): its keys, rank and delta as files hold them.
    layout = None

    def __init__(self, name: str, base: nn.Module, rank: int, alpha: float, multiplier: float = 1.0,
                 dropout: float = 0.0, rank_dropout: float = 0.0, module_dropout: float = 0.0, spec=None):
        super().__init__()
        self.name = name
        self.spec = spec
        self.rank = rank
        # A Python float, not a device buffer: reading a CUDA scalar back on every forward would sync the
        # device once per adapter per step. Set here and by ``load_exported``; files get it as a tensor.
        self.alpha = float(alpha)
        self.multiplier = multiplier
        self.dropout = dropout
        self.rank_dropout = rank_dropout
        self.module_dropout = module_dropout
        # The host's layer, kept outside nn.Module's registries: its weight is not this adapter's parameter,
        # so parameters(), state_dict() and .to() of the network never reach the host's tensors.
        object.__setattr__(self, "_base_layer", base)
        self.is_conv = isinstance(base, nn.Conv2d)
        if self.is_conv:
            self.in_dim, self.out_dim = base.in_channels, base.out_channels
            self.kernel_size, self.stride = base.kernel_size, base.stride
            self.padding, self.dilation, self.groups = base.padding, base.dilation, base.groups
        elif is_linear(base):
            self.in_dim, self.out_dim = base.in_features, base.out_features
        else:
            raise TypeError(f"{name}: can only adapt Linear or Conv2d layers, not {type(base).__name__}")

    @property
    def scale(self) -> float:
        return self.alpha / self.rank

    @property
    def base_weight(self) -> torch.Tensor:
        """The host layer's current weight (read-only here; followed, not copied, so offloading is seen)."""
        return self._base_layer.weight

    @property
    def base_bias(self) -> torch.Tensor | None:
        return getattr(self._base_layer, "bias", None)

    def alpha_tensor(self) -> torch.Tensor:
        """alpha as the file stores it (a float32 scalar)."""
        return torch.tensor(self.alpha, dtype=torch.float32)

    def forward(self, x: torch.Tensor, base_out: torch.Tensor, base: nn.Module) -> torch.Tensor:
        if self.skips_this_step():
            return base_out
        return self._add_delta(x, base_out, base)

    def _add_delta(self, x: torch.Tensor, base_out: torch.Tensor, base: nn.Module) -> torch.Tensor:
        delta = self.delta_forward(x, base)
        if self.multiplier != 1.0:
            delta = delta * self.multiplier
        # Added into the base output in place: the base layer's backward never reads its own output, so
        # only the sum stays alive, not the base output, the delta and a scaled copy beside it (three
        # output-sized tensors at once, the training step's peak on the largest targeted layer).
        # Into the tensor base_out views, if any (fused.unviewed: no CopySlices node in backward).
        target = unviewed(base_out)
        return target.add_(delta.to(base_out.dtype).reshape(target.shape)).view(base_out.shape)

    def delta_forward(self, x: torch.Tensor, base: nn.Module) -> torch.Tensor:
        raise NotImplementedError

    def export(self) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def load_exported(self, tensors: dict[str, torch.Tensor]) -> None:
        """Inverse of ``export`` (resume, continue training an existing file)."""
        raise NotImplementedError

    # Helpers shared by algorithms.
    def skips_this_step(self) -> bool:
        """Module dropout: in training, leave the base output alone with probability ``module_dropout``."""
        return bool(self.training and self.module_dropout and torch.rand(()) < self.module_dropout)

    def _apply_dropout(self, x: torch.Tensor) -> torch.Tensor:
        return F.dropout(x, self.dropout) if (self.training and self.dropout) else x

    def _rank_mask(self, h: torch.Tensor) -> torch.Tensor:
        """Rank dropout: drop whole rank channels, rescaled so the expectation is unchanged."""
        if not (self.training and self.rank_dropout):
            return h
        shape = (h.shape[0], h.shape[1]) + (1,) * (h.dim() - 2) if self.is_conv else (h.shape[0],) + (1,) * (h.dim() - 2) + (h.shape[-1],)
        keep = (torch.rand(shape, device=h.device) > self.rank_dropout).to(h.dtype)
        return h * keep / (1.0 - self.rank_dropout)

    def trainable_parameters(self):
        return [p for p in self.parameters() if p.requires_grad]


def kaiming_uniform_(t: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """kohya's and LyCORIS's init for the random factor: kaiming-uniform with a = sqrt(5)."""
    fan_in = t[0].numel() if t.dim() > 1 else t.numel()
    bound = (3.0 / fan_in) ** 0.5 * (2.0 / 6.0) ** 0.5
    with torch.no_grad():
        return t.uniform_(-bound, bound, generator=generator)
