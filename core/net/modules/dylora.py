"""DyLoRA: a LoRA whose leading sub-ranks are each a usable LoRA. Each training step uses only the first
b rank channels, b drawn from {unit, 2 unit, ..., rank} (the DyLoRA paper's truncation), at the full
network's scale alpha / rank, so cutting the file to rank b later keeps the trained scale when alpha is
cut in proportion. Outside training the whole rank is used, which is what the file means: it is saved as a
plain LoRA at full rank (lora_up/lora_down/alpha), as kohya's DyLoRA files are, and loads everywhere.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..registry import register_algorithm
from .lora import LoRAModule

UNIT = 4   # the guides: DyLoRA dims divisible by 4, unit 4


@register_algorithm("dylora")
class DyLoRAModule(LoRAModule):
    def sub_rank(self) -> int:
        """The rank this step trains: a multiple of UNIT, or the full rank."""
        choices = list(range(UNIT, self.rank, UNIT)) + [self.rank]
        return choices[int(torch.randint(len(choices), ()))]

    def delta_forward(self, x, base):
        if not self.training or self.rank <= UNIT:
            return super().delta_forward(x, base)
        b = self.sub_rank()
        x = self._apply_dropout(x)
        down = self.lora_down[:b].to(x.dtype)
        up = self.lora_up[:, :b].to(x.dtype)
        if self.is_conv:
            h = F.conv2d(x, down, None, self.stride, self.padding, self.dilation, self.groups)
            return F.conv2d(self._rank_mask(h) * self.scale, up)
        return F.linear(self._rank_mask(F.linear(x, down)) * self.scale, up)
