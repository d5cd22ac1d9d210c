"""What network to train, as a small value object (built by the Network node, read by the trainer)."""
from __future__ import annotations

from dataclasses import dataclass, field, replace


@dataclass(frozen=True)
class NetworkSpec:
    algorithm: str = "lora"
    rank: int = 32                  # the guides' default dim
    alpha: float = 16.0             # ... and alpha (half the dim)
    conv_rank: int = 0              # >0 also trains 3x3 convs (LoCon-style); 0 leaves them alone
    conv_alpha: float = 1.0
    dropout: float = 0.0            # neuron dropout on the adapter's input
    rank_dropout: float = 0.0
    module_dropout: float = 0.0
    targets: str = "attn_mlp"       # "attn" | "attn_mlp" | "full" (see core.net.targets)
    train_unet: bool = True
    train_text_encoder: bool = False
    # Block-wise weights: {block name: factor} for the rank and the learning rate (see core.net.blocks).
    block_rank_weights: tuple[tuple[str, float], ...] = field(default=())
    block_lr_weights: tuple[tuple[str, float], ...] = field(default=())
    factor: int = -1                # LoKr factorisation (-1: as balanced as possible)
    decompose_both: bool = False    # LoKr: low-rank both Kronecker factors
    dora: bool = False              # weight-decomposed (DoRA) variant where the algorithm supports it
    init_seed: int = 0

    def replace(self, **changes) -> "NetworkSpec":
        return replace(self, **changes)

    def rank_for(self, is_conv3x3: bool, block_factor: float = 1.0) -> tuple[int, float]:
        """(rank, alpha) for a layer, after the block weight; 0 rank means "skip this layer"."""
        rank, alpha = (self.conv_rank, self.conv_alpha) if is_conv3x3 else (self.rank, self.alpha)
        if rank <= 0 or block_factor <= 0:
            return 0, alpha
        scaled = max(1, int(round(rank * block_factor)))
        # Keep alpha/rank (the effective scale) when a block weight shrinks the rank.
        return scaled, alpha * scaled / rank
