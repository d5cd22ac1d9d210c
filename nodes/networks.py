"""Network and optimizer configuration nodes: they only build small config values for the Train node."""
from comfy_api.latest import io

from ..core.net.blocks import parse_weights
from ..core.net.registry import ALGORITHMS, algorithm_class
from ..core.net.spec import NetworkSpec
from ..core.net.targets import PRESETS
from ..core.train.optim import OPTIMIZERS, SCHEDULERS, OptimizerSpec
from ..core.train.presets import NETWORK_SIZES, apply_network_size
from .schema import Network, Optimizer, config_values, from_field, help_of, node_input, output

NO_SIZE_PRESET = "custom"   # the NETWORK_SIZES entry that keeps rank/alpha as entered


def _algorithms():
    algorithm_class("lora")  # imports every algorithm module so the registry is full
    return sorted(ALGORITHMS)


def _block_weights(text: str, what: str) -> tuple:
    return tuple((name.upper(), value) for name, value in parse_weights(text, what))


class KilnNetworkConfig(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="KilnNetworkConfig", display_name="Kiln Network", category="Kiln/Training",
            description="Choose the adapter the Train node builds: algorithm, rank/alpha, which layers, dropouts, "
                        "block weights.",
            inputs=[
                from_field(NetworkSpec, "algorithm", options=_algorithms()),
                from_field(NetworkSpec, "rank"),
                from_field(NetworkSpec, "alpha"),
                from_field(NetworkSpec, "conv_rank", advanced=True),
                from_field(NetworkSpec, "conv_alpha", advanced=True),
                from_field(NetworkSpec, "targets", options=list(PRESETS)),
                from_field(NetworkSpec, "train_unet", advanced=True),
                from_field(NetworkSpec, "train_text_encoder"),
                node_input(io.Combo, "size_preset", options=list(NETWORK_SIZES), default=NO_SIZE_PRESET, optional=True,
                           tooltip="Set rank/alpha (and conv rank/alpha) from a preset; 'custom' uses the values "
                                   "above."),
                from_field(NetworkSpec, "dropout", optional=True, advanced=True),
                from_field(NetworkSpec, "rank_dropout", optional=True, advanced=True),
                from_field(NetworkSpec, "module_dropout", optional=True, advanced=True),
                node_input(io.String, "block_rank_weights", default="", multiline=True, optional=True, advanced=True,
                           tooltip=help_of(NetworkSpec, "block_rank_weights")),
                node_input(io.String, "block_lr_weights", default="", multiline=True, optional=True, advanced=True,
                           tooltip=help_of(NetworkSpec, "block_lr_weights")),
                from_field(NetworkSpec, "factor", id="lokr_factor", optional=True, advanced=True),
                from_field(NetworkSpec, "init_seed", id="seed", optional=True, advanced=True),
            ],
            outputs=[output(Network, "network")])

    @classmethod
    def execute(cls, algorithm, rank, alpha, conv_rank, conv_alpha, targets, train_unet, train_text_encoder,
                size_preset=NO_SIZE_PRESET, block_rank_weights="", block_lr_weights="", **options):
        algorithm_class(algorithm)
        spec = NetworkSpec(algorithm=algorithm, rank=rank, alpha=alpha, conv_rank=conv_rank, conv_alpha=conv_alpha,
                           targets=targets, train_unet=train_unet, train_text_encoder=train_text_encoder,
                           block_rank_weights=_block_weights(block_rank_weights, "block_rank_weights"),
                           block_lr_weights=_block_weights(block_lr_weights, "block_lr_weights"),
                           dora=algorithm == "dora",
                           **config_values(NetworkSpec, options, {"lokr_factor": "factor", "seed": "init_seed"}))
        return io.NodeOutput(apply_network_size(spec, size_preset))


class KilnOptimizerConfig(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="KilnOptimizerConfig", display_name="Kiln Optimizer", category="Kiln/Training",
            description="Optimizer, learning rates and schedule for the Train node.",
            inputs=[
                from_field(OptimizerSpec, "name", id="optimizer", options=sorted(OPTIMIZERS)),
                from_field(OptimizerSpec, "lr", id="learning_rate", round=False),
                from_field(OptimizerSpec, "text_encoder_lr", round=False),
                from_field(OptimizerSpec, "scheduler", options=list(SCHEDULERS)),
                from_field(OptimizerSpec, "warmup_steps"),
                from_field(OptimizerSpec, "warmup_ratio", advanced=True),
                from_field(OptimizerSpec, "weight_decay", advanced=True),
                from_field(OptimizerSpec, "max_grad_norm", advanced=True),
                from_field(OptimizerSpec, "num_cycles", optional=True, advanced=True),
                from_field(OptimizerSpec, "power", optional=True, advanced=True),
                from_field(OptimizerSpec, "min_lr_ratio", optional=True, advanced=True),
            ],
            outputs=[output(Optimizer, "optimizer")])

    @classmethod
    def execute(cls, **inputs):
        return io.NodeOutput(OptimizerSpec(**config_values(OptimizerSpec, inputs,
                                                           {"optimizer": "name", "learning_rate": "lr"})))


NODES = (KilnNetworkConfig, KilnOptimizerConfig)
