"""What network to train, as a small value object (built by the Network node, read by the trainer)."""
from __future__ import annotations

from dataclasses import dataclass, replace

from ..fields import setting


@dataclass(frozen=True)
class NetworkSpec:
    algorithm: str = setting("lora", "Adapter type: lora (LoCon when conv_rank > 0), loha, lokr, ia3, dylora, "
                             "dora, full.")
    rank: int = setting(32, "Network dim (rank) of linear and 1x1 layers. The guides start at 32.", min=1, max=1024)
    alpha: float = setting(16.0, "Network alpha; the effective scale is alpha/rank. Half the rank is the common habit.",
                           min=0.0, max=1024.0, step=0.5)
    conv_rank: int = setting(0, "Rank for 3x3 convolutions (LoCon); 0 leaves them untrained.", min=0, max=1024)
    conv_alpha: float = setting(1.0, "Alpha for 3x3 convolutions.", min=0.0, max=1024.0, step=0.5)
    dropout: float = setting(0.0, "Neuron dropout on each adapter's input.", min=0.0, max=1.0, step=0.01)
    rank_dropout: float = setting(0.0, "Drop whole rank channels during training.", min=0.0, max=1.0, step=0.01)
    module_dropout: float = setting(0.0, "Skip a whole adapter for a step with this probability.",
                                    min=0.0, max=1.0, step=0.01)
    targets: str = setting("attn_mlp", "attn: attention projections only; attn_mlp: whole transformer blocks "
                           "(kohya's default); full: also ResNet, time-embedding and resampling layers.")
    train_unet: bool = setting(True, "Train the UNet / diffusion model.")
    train_text_encoder: bool = setting(False, "Also train the text encoder (needs CLIP wired into the Train node).")
    # Block-wise weights: {block name: factor} for the rank and the learning rate (see core.net.blocks).
    block_rank_weights: tuple[tuple[str, float], ...] = setting(
        (), "Per-block rank factors, e.g. IN01=0.5, MID=1, OUT11=0 (0 skips the block).")
    block_lr_weights: tuple[tuple[str, float], ...] = setting(
        (), "Per-block learning-rate factors, e.g. IN01=0.5, OUT05=2, TE=0.5.")
    factor: int = setting(-1, "LoKr factorisation; -1 picks the most balanced split.", min=-1, max=1024)
    decompose_both: bool = False    # LoKr: low-rank both Kronecker factors
    dora: bool = False              # weight-decomposed (DoRA) variant where the algorithm supports it
    init_seed: int = setting(0, "Seed for the adapters' initial weights.", min=0, max=2**31 - 1)

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
