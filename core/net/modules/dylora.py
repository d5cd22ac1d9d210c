"""DyLoRA: a LoRA whose every leading sub-rank is trained: each step uses the first b rank channels (b
drawn in steps of ``unit``), so the file can later be cut to any smaller rank. Saved as a plain LoRA at
the full rank, which is how kohya's DyLoRA files load everywhere."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..registry import register_algorithm
from .lora import LoRAModule

UNIT = 4   # the guides: DyLoRA dims divisible by 4, unit 4


@register_algorithm("dylora")
class DyLoRAModule(LoRAModule):
    def delta_forward(self, x, base):
        if not self.training or self.rank <= UNIT:
            return super().delta_forward(x, base)
        b = UNIT * int(torch.randint(1, self.rank // UNIT + 1, ()))
        x = self._apply_dropout(x)
        down = self.lora_down[:b].to(x.dtype)
        up = self.lora_up[:, :b].to(x.dtype)
        if self.is_conv:
            h = F.conv2d(x, down, None, self.stride, self.padding, self.dilation, self.groups)
            return F.conv2d(h, up) * self.scale
        return F.linear(F.linear(x, down), up) * self.scale
