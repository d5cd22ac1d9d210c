"""Network and optimizer configuration nodes: they only build small config values for the Train node."""
from ..core.net.blocks import parse_weights
from ..core.net.spec import NetworkSpec
from ..core.net.registry import algorithm_class, ALGORITHMS
from ..core.net.targets import PRESETS
from ..core.train.optim import OPTIMIZERS, SCHEDULERS, OptimizerSpec
from ..core.train.presets import NETWORK_SIZES, apply_network_size


def _algorithms():
    algorithm_class("lora")  # imports every algorithm module so the registry is full
    return sorted(ALGORITHMS)


def _block_weights(text: str, what: str) -> tuple:
    return tuple((name.upper(), value) for name, value in parse_weights(text, what))


class KilnNetworkConfig:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "algorithm": (_algorithms(), {"default": "lora", "tooltip": "Adapter type: lora (LoCon when conv_rank > 0), loha, lokr, ia3, dylora, dora, full."}),
            "rank": ("INT", {"default": 32, "min": 1, "max": 1024, "tooltip": "Network dim (rank) of linear and 1x1 layers. The guides start at 32."}),
            "alpha": ("FLOAT", {"default": 16.0, "min": 0.0, "max": 1024.0, "step": 0.5, "tooltip": "Network alpha; the effective scale is alpha/rank. Half the rank is the common habit."}),
            "conv_rank": ("INT", {"default": 0, "min": 0, "max": 1024, "tooltip": "Rank for 3x3 convolutions (LoCon); 0 leaves them untrained."}),
            "conv_alpha": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 1024.0, "step": 0.5, "tooltip": "Alpha for 3x3 convolutions."}),
            "targets": (list(PRESETS), {"default": "attn_mlp", "tooltip": "attn: attention projections only; attn_mlp: whole transformer blocks (kohya's default); full: also ResNet, time-embedding and resampling layers."}),
            "train_unet": ("BOOLEAN", {"default": True, "tooltip": "Train the UNet / diffusion model."}),
            "train_text_encoder": ("BOOLEAN", {"default": False, "tooltip": "Also train the text encoder (needs CLIP wired into the Train node)."}),
        }, "optional": {
            "size_preset": (list(NETWORK_SIZES), {"default": "custom", "tooltip": "Set rank/alpha (and conv rank/alpha) from a preset; 'custom' uses the values above."}),
            "dropout": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 1.0, "step": 0.01, "tooltip": "Neuron dropout on each adapter's input."}),
            "rank_dropout": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 1.0, "step": 0.01, "tooltip": "Drop whole rank channels during training."}),
            "module_dropout": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 1.0, "step": 0.01, "tooltip": "Skip a whole adapter for a step with this probability."}),
            "block_rank_weights": ("STRING", {"default": "", "multiline": True, "tooltip": "Per-block rank factors, e.g. IN01=0.5, MID=1, OUT11=0 (0 skips the block)."}),
            "block_lr_weights": ("STRING", {"default": "", "multiline": True, "tooltip": "Per-block learning-rate factors, e.g. IN01=0.5, OUT05=2, TE=0.5."}),
            "lokr_factor": ("INT", {"default": -1, "min": -1, "max": 1024, "tooltip": "LoKr factorisation; -1 picks the most balanced split."}),
            "seed": ("INT", {"default": 0, "min": 0, "max": 2**31 - 1, "tooltip": "Seed for the adapters' initial weights."}),
        }}

    RETURN_TYPES = ("KILN_NETWORK",)
    RETURN_NAMES = ("network",)
    FUNCTION = "build"
    CATEGORY = "Kiln/Training"
    DESCRIPTION = "Choose the adapter the Train node builds: algorithm, rank/alpha, which layers, dropouts, block weights."

    def build(self, algorithm, rank, alpha, conv_rank, conv_alpha, targets, train_unet, train_text_encoder,
              dropout=0.0, rank_dropout=0.0, module_dropout=0.0, block_rank_weights="", block_lr_weights="",
              lokr_factor=-1, seed=0, size_preset="custom"):
        algorithm_class(algorithm)
        return (apply_network_size(NetworkSpec(algorithm=algorithm, rank=rank, alpha=alpha, conv_rank=conv_rank, conv_alpha=conv_alpha,
                            targets=targets, train_unet=train_unet, train_text_encoder=train_text_encoder,
                            dropout=dropout, rank_dropout=rank_dropout, module_dropout=module_dropout,
                            block_rank_weights=_block_weights(block_rank_weights, "block_rank_weights"),
                            block_lr_weights=_block_weights(block_lr_weights, "block_lr_weights"),
                            factor=lokr_factor, dora=algorithm == "dora", init_seed=seed), size_preset),)


class KilnOptimizerConfig:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "optimizer": (sorted(OPTIMIZERS), {"default": "adamw", "tooltip": "adamw8bit needs bitsandbytes and CUDA; prodigy takes lr as a multiplier (use 1.0)."}),
            "learning_rate": ("FLOAT", {"default": 1e-4, "min": 0.0, "max": 10.0, "step": 1e-6, "round": False, "tooltip": "UNet learning rate (the guides' default 1e-4)."}),
            "text_encoder_lr": ("FLOAT", {"default": 5e-5, "min": 0.0, "max": 10.0, "step": 1e-6, "round": False, "tooltip": "Text-encoder learning rate (used when the network trains it)."}),
            "scheduler": (list(SCHEDULERS), {"default": "cosine_with_restarts", "tooltip": "Learning-rate schedule."}),
            "warmup_steps": ("INT", {"default": 0, "min": 0, "max": 100000, "tooltip": "Linear warm-up steps (0: use warmup_ratio)."}),
            "warmup_ratio": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 1.0, "step": 0.01, "tooltip": "Warm-up as a fraction of all steps, when warmup_steps is 0."}),
            "weight_decay": ("FLOAT", {"default": 0.01, "min": 0.0, "max": 1.0, "step": 0.001, "tooltip": "Decoupled weight decay."}),
            "max_grad_norm": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 100.0, "step": 0.1, "tooltip": "Clip gradients to this norm (0: no clipping)."}),
        }, "optional": {
            "num_cycles": ("INT", {"default": 1, "min": 1, "max": 100, "tooltip": "Restarts for cosine_with_restarts."}),
            "power": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 10.0, "step": 0.1, "tooltip": "Exponent for the polynomial schedule."}),
            "min_lr_ratio": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 1.0, "step": 0.01, "tooltip": "Floor of the decaying schedules, as a fraction of the learning rate."}),
        }}

    RETURN_TYPES = ("KILN_OPTIMIZER",)
    RETURN_NAMES = ("optimizer",)
    FUNCTION = "build"
    CATEGORY = "Kiln/Training"
    DESCRIPTION = "Optimizer, learning rates and schedule for the Train node."

    def build(self, optimizer, learning_rate, text_encoder_lr, scheduler, warmup_steps, warmup_ratio, weight_decay,
              max_grad_norm, num_cycles=1, power=1.0, min_lr_ratio=0.0):
        return (OptimizerSpec(name=optimizer, lr=learning_rate, text_encoder_lr=text_encoder_lr, scheduler=scheduler,
                              warmup_steps=warmup_steps, warmup_ratio=warmup_ratio, weight_decay=weight_decay,
                              max_grad_norm=max_grad_norm, num_cycles=num_cycles, power=power,
                              min_lr_ratio=min_lr_ratio),)


NODE_CLASS_MAPPINGS = {"KilnNetworkConfig": KilnNetworkConfig, "KilnOptimizerConfig": KilnOptimizerConfig}
NODE_DISPLAY_NAME_MAPPINGS = {"KilnNetworkConfig": "Kiln Network", "KilnOptimizerConfig": "Kiln Optimizer"}
