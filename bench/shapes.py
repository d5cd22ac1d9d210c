"""Layer shapes of real architectures, written out procedurally (no weights needed)."""
from __future__ import annotations


def _transformer_layers(prefix: str, dim: int, context: int, depth: int, linear_proj: bool):
    proj = (dim, dim) if linear_proj else (dim, dim, 1, 1)
    out = [(f"{prefix}_proj_in", proj), (f"{prefix}_proj_out", proj)]
    for d in range(depth):
        b = f"{prefix}_transformer_blocks_{d}"
        out += [(f"{b}_attn1_to_q", (dim, dim)), (f"{b}_attn1_to_k", (dim, dim)), (f"{b}_attn1_to_v", (dim, dim)),
                (f"{b}_attn1_to_out_0", (dim, dim)), (f"{b}_attn2_to_q", (dim, dim)),
                (f"{b}_attn2_to_k", (dim, context)), (f"{b}_attn2_to_v", (dim, context)),
                (f"{b}_attn2_to_out_0", (dim, dim)), (f"{b}_ff_net_0_proj", (dim * 8, dim)),
                (f"{b}_ff_net_2", (dim, dim * 4))]
    return out


def sdxl_unet_lora_layers():
    """kohya names (LDM layout) and weight shapes of SDXL's transformer layers: 722 modules."""
    layers = []
    # input_blocks: 1-2 level 0 (no attention), 4-5 level 1 (640, depth 2), 7-8 level 2 (1280, depth 10)
    for idx, dim, depth in [(4, 640, 2), (5, 640, 2), (7, 1280, 10), (8, 1280, 10)]:
        layers += _transformer_layers(f"lora_unet_input_blocks_{idx}_1", dim, 2048, depth, True)
    layers += _transformer_layers("lora_unet_middle_block_1", 1280, 2048, 10, True)
    for idx, dim, depth in [(0, 1280, 10), (1, 1280, 10), (2, 1280, 10), (3, 640, 2), (4, 640, 2), (5, 640, 2)]:
        layers += _transformer_layers(f"lora_unet_output_blocks_{idx}_1", dim, 2048, depth, True)
    return layers


def sd15_unet_layers(conv: bool = False):
    """SD1.5 transformer layers (and, with conv, the ResNet 3x3 convs) as (host-style name, shape)."""
    layers = []
    chans = [320, 640, 1280, 1280]
    idx = 1
    for level, c in enumerate(chans):
        for r in range(2):
            c_in = chans[level - 1] if (r == 0 and level > 0) else c
            if conv:
                layers += [(f"diffusion_model.input_blocks.{idx}.0.in_layers.2", (c, c_in, 3, 3)),
                           (f"diffusion_model.input_blocks.{idx}.0.out_layers.3", (c, c, 3, 3))]
            if level < 3:
                layers += _ldm(f"diffusion_model.input_blocks.{idx}.1", c, 768)
            idx += 1
        idx += 1 if level < 3 else 0
    layers += _ldm("diffusion_model.middle_block.1", 1280, 768)
    out_chans = [1280, 1280, 640, 320]
    idx = 0
    for level, c in enumerate(out_chans):
        for r in range(3):
            if conv:
                layers += [(f"diffusion_model.output_blocks.{idx}.0.out_layers.3", (c, c, 3, 3))]
            if level > 0:
                layers += _ldm(f"diffusion_model.output_blocks.{idx}.1", c, 768)
            idx += 1
    return layers


def _ldm(prefix: str, dim: int, context: int):
    out = [(f"{prefix}.proj_in", (dim, dim, 1, 1)), (f"{prefix}.proj_out", (dim, dim, 1, 1))]
    b = f"{prefix}.transformer_blocks.0"
    out += [(f"{b}.attn1.to_q", (dim, dim)), (f"{b}.attn1.to_k", (dim, dim)), (f"{b}.attn1.to_v", (dim, dim)),
            (f"{b}.attn1.to_out.0", (dim, dim)), (f"{b}.attn2.to_q", (dim, dim)), (f"{b}.attn2.to_k", (dim, context)),
            (f"{b}.attn2.to_v", (dim, context)), (f"{b}.attn2.to_out.0", (dim, dim)),
            (f"{b}.ff.net.0.proj", (dim * 8, dim)), (f"{b}.ff.net.2", (dim, dim * 4))]
    return out
