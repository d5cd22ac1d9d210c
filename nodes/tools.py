"""LoRA tool nodes: load any LoRA file, resize, merge, extract from two models, compare, inspect."""
from __future__ import annotations

from comfy_api.latest import io

from .. import host
from ..core.lora.formats import to_kohya
from ..core.lora.io import load_lora_file
from ..core.net.blocks import parse_weights
from ..core.plots import bar_chart
from ..core.tools.extract import ExtractSpec, extract_lora
from ..core.tools.lora_info import (block_norms, compare_loras, comparison_plot, comparison_text,
                                  inspect_text, module_infos)
from ..core.tools.merge import check_against_model, merge_loras, without_modules
from ..core.tools.resize import ResizeSpec, format_report, resize_lora
from ..host.families import base_model_version
from ..host.training import apply_lora, kohya_names_for_model, layer_shapes, patched_weights
from .schema import Lora, node_input, output

RANK_METHODS = ["fixed", "sv_ratio", "sv_fro", "sv_cumulative"]


def _strength(id, tooltip, **kw):  # noqa: A002
    return node_input(io.Float, id, default=1.0, min=-10.0, max=10.0, step=0.01, tooltip=tooltip, **kw)


def _block_weights(tooltip):
    return node_input(io.String, "block_weights", default="", multiline=True, optional=True, tooltip=tooltip)


class KilnLoadLora(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="KilnLoadLora", display_name="Kiln Load LoRA", category="Kiln/LoRA",
            description="Read a LoRA file (safetensors only; never unpickles) into a Kiln LoRA value with kohya key "
                        "names.",
            inputs=[node_input(io.Combo, "lora_name", options=host.lora_names(),
                               tooltip="A LoRA in the loras folder: kohya, LyCORIS, ComfyUI-native or diffusers/PEFT "
                                       "keys.")],
            outputs=[output(Lora, "lora")])

    @classmethod
    def execute(cls, lora_name):
        return io.NodeOutput(to_kohya(load_lora_file(host.lora_path(lora_name))))


class KilnResizeLora(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="KilnResizeLora", display_name="Kiln Resize LoRA", category="Kiln/LoRA",
            description="Resize exactly from the factors (QR + small SVD) for LoRA layers; randomized SVD for "
                        "LoHa/LoKr/diff.",
            inputs=[
                node_input(Lora, "lora", tooltip="The LoRA to resize."),
                node_input(io.Combo, "method", options=RANK_METHODS, default="fixed",
                           tooltip="fixed rank, or dynamic per layer: sv_ratio (keep singular values >= max/ratio), "
                                   "sv_fro (keep this fraction of the energy), sv_cumulative (this fraction of the sum "
                                   "of singular values)."),
                node_input(io.Float, "value", default=32.0, min=0.0, max=4096.0, step=0.01,
                           tooltip="The rank for 'fixed'; the ratio or fraction (e.g. 0.9) for the dynamic methods."),
                node_input(io.Int, "max_rank", default=256, min=1, max=4096,
                           tooltip="Upper bound for dynamic methods."),
            ],
            outputs=[output(Lora, "lora"), output(io.String, "report")])

    @classmethod
    def execute(cls, lora, method, value, max_rank):
        pbar = host.progress_bar(len(lora.modules))
        out, report = resize_lora(lora, ResizeSpec(method, value, max_rank),
                                  progress=lambda: (host.throw_if_interrupted(), pbar.update(1)))
        text = format_report(report)
        return io.NodeOutput(out, text, ui={"text": [text]})


class KilnMergeLoras(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="KilnMergeLoras", display_name="Kiln Merge LoRAs", category="Kiln/LoRA",
            description="Merge LoRAs so the result's effect is exactly the weighted sum of their effects "
                        "(concatenated factors).",
            inputs=[
                node_input(Lora, "lora_a", tooltip="First LoRA."),
                _strength("weight_a", "Weight of the first LoRA."),
                node_input(Lora, "lora_b", tooltip="Second LoRA."),
                _strength("weight_b", "Weight of the second LoRA."),
                node_input(io.Int, "rank", default=0, min=0, max=4096,
                           tooltip="0 keeps the merge exact (ranks add up); > 0 compresses to this rank by the exact "
                                   "factored SVD."),
                node_input(Lora, "lora_c", optional=True, tooltip="Optional third LoRA."),
                _strength("weight_c", "Weight of the third LoRA.", optional=True),
                _block_weights("Per-block factors applied to every LoRA: blocks IN00..IN11, MID, OUT00..OUT11, TE, "
                               "BASE, or kohya module patterns, e.g. TE=0, OUT04=0.5, lora_unet_up_blocks_1_*=0.5 "
                               "(last match wins)."),
            ],
            outputs=[output(Lora, "lora")])

    @classmethod
    def execute(cls, lora_a, weight_a, lora_b, weight_b, rank, lora_c=None, weight_c=1.0, block_weights=""):
        items = [(lora_a, weight_a), (lora_b, weight_b)] + ([(lora_c, weight_c)] if lora_c is not None else [])
        weights = parse_weights(block_weights, "Kiln Merge LoRAs block_weights")
        names = ["lora_a", "lora_b"] + (["lora_c"] if lora_c is not None else [])
        return io.NodeOutput(merge_loras(items, rank or None, weights, names))


class KilnExtractLora(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="KilnExtractLora", display_name="Kiln Extract LoRA", category="Kiln/LoRA",
            description="Extract a LoRA from the difference of two models with a randomized SVD per layer.",
            inputs=[
                node_input(io.Model, "model_tuned", tooltip="Model A (e.g. a fine-tune)."),
                node_input(io.Model, "model_base", tooltip="Model B (the base it was tuned from). The LoRA is A - B."),
                node_input(io.Combo, "method", options=["fixed", "sv_fro", "sv_ratio"], default="fixed",
                           tooltip="fixed rank, or per layer: sv_fro keeps this fraction of the layer's energy; "
                                   "sv_ratio keeps singular values >= max/ratio."),
                node_input(io.Float, "value", default=32.0, min=0.0, max=4096.0, step=0.01,
                           tooltip="Rank for fixed, fraction/ratio otherwise."),
                node_input(io.Int, "max_rank", default=128, min=1, max=4096, tooltip="Upper bound per layer."),
                node_input(io.Int, "conv_rank", default=0, min=0, max=4096,
                           tooltip="Rank for 3x3 convs (0 skips them)."),
                node_input(io.Float, "clamp_quantile", default=0.99, min=0.5, max=1.0, step=0.001, advanced=True,
                           tooltip="Clamp factor values at this quantile (1 = off), like kohya's extractor."),
                node_input(io.Clip, "clip_tuned", optional=True,
                           tooltip="Text encoder of A (to extract text-encoder layers too)."),
                node_input(io.Clip, "clip_base", optional=True, tooltip="Text encoder of B."),
                node_input(io.Int, "oversample", default=16, min=0, max=256, optional=True, advanced=True,
                           tooltip="Randomized SVD oversampling."),
                node_input(io.Int, "power_iterations", default=6, min=0, max=10, optional=True, advanced=True,
                           tooltip="Randomized SVD power iterations."),
            ],
            outputs=[output(Lora, "lora"), output(io.String, "report")])

    @classmethod
    def execute(cls, model_tuned, model_base, method, value, max_rank, conv_rank, clamp_quantile,
                clip_tuned=None, clip_base=None, oversample=16, power_iterations=6):
        names = kohya_names_for_model(model_base, clip_base if clip_tuned is not None else None)
        # Weights as each MODEL means them: a model with LoRAs applied (LoraLoader) counts as tuned.
        both = clip_tuned is not None and clip_base is not None
        sd_a = patched_weights(model_tuned, clip_tuned if both else None)
        sd_b = patched_weights(model_base, clip_base if both else None)
        host_names = {k: v[: -len(".weight")] for k, v in names.items()}
        pbar = host.progress_bar(len(names))
        spec = ExtractSpec(method, value, max_rank, conv_rank, clamp_quantile=clamp_quantile, oversample=oversample,
                           power_iters=power_iterations, text_encoder=clip_tuned is not None)
        lora, report = extract_lora(sd_a, sd_b, names, spec, host_names=host_names,
                                    progress=lambda: (host.throw_if_interrupted(), pbar.update(1)),
                                    base_model_version=base_model_version(model_base), title="extracted LoRA")
        text = format_report(report)
        return io.NodeOutput(lora, text, ui={"text": [text]})


class KilnCompareLoras(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="KilnCompareLoras", display_name="Kiln Compare LoRAs", category="Kiln/LoRA", is_output_node=True,
            description="Per-module cosine similarity and norm ratio (B/A) of two LoRAs' deltas, as a table and a "
                        "plot.",
            inputs=[node_input(Lora, "lora_a", tooltip="First LoRA (A)."),
                    node_input(Lora, "lora_b", tooltip="Second LoRA (B).")],
            outputs=[output(io.String, "table"), output(io.Image, "plot")])

    @classmethod
    def execute(cls, lora_a, lora_b):
        rows = compare_loras(lora_a, lora_b)
        text = comparison_text(rows)
        return io.NodeOutput(text, host.image_batch(comparison_plot(rows)), ui={"text": [text]})


class KilnInspectLora(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="KilnInspectLora", display_name="Kiln Inspect LoRA", category="Kiln/LoRA", is_output_node=True,
            description="Modules, ranks, alphas, norms, algorithm, base model and ss_* metadata, plus a per-block "
                        "norm plot.",
            inputs=[node_input(Lora, "lora", tooltip="The LoRA to describe.")],
            outputs=[output(io.String, "report"), output(io.Image, "block_norms")])

    @classmethod
    def execute(cls, lora):
        text = inspect_text(lora)
        plot = bar_chart(block_norms(module_infos(lora)), "sum of delta norms per block")
        return io.NodeOutput(text, host.image_batch(plot), ui={"text": [text]})


class KilnMergeLoraIntoModel(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="KilnMergeLoraIntoModel", display_name="Kiln Merge LoRA Into Model", category="Kiln/LoRA",
            description="Merge a LoRA into a model after checking every module against the model's layers (a clear "
                        "error naming the module on a shape or base-model mismatch). Save the result with the "
                        "host's Save Checkpoint node.",
            inputs=[
                node_input(io.Model, "model", tooltip="The model to merge the LoRA into."),
                node_input(Lora, "lora", tooltip="The LoRA to merge (from Load, Train, Resize, Merge or Extract)."),
                _strength("strength_model", "How much of the LoRA's UNet delta to add."),
                node_input(io.Clip, "clip", optional=True,
                           tooltip="The text encoder, to merge the LoRA's text-encoder layers too (they are skipped "
                                   "without it)."),
                _strength("strength_clip", "How much of the LoRA's text-encoder delta to add.", optional=True),
                _block_weights("Per-block factors: IN00..IN11, MID, OUT00..OUT11, TE, BASE, or kohya module "
                               "patterns, e.g. OUT04=0.5, TE=0 (last match wins)."),
            ],
            outputs=[output(io.Model, "model"), output(io.Clip, "clip"), output(io.String, "report")])

    @classmethod
    def execute(cls, model, lora, strength_model, clip=None, strength_clip=1.0, block_weights=""):
        weights = parse_weights(block_weights, "Kiln Merge LoRA Into Model block_weights")
        if weights:
            lora = merge_loras([(lora, 1.0)], block_weights=weights)
        skipped = check_against_model(lora, layer_shapes(model, clip))
        if skipped:
            lora = without_modules(lora, skipped)
        new_model, new_clip = apply_lora(model, clip, lora, strength_model, strength_clip)
        text = (f"merged {len(lora.modules)} modules at strength {strength_model:g} (model) / {strength_clip:g} "
                "(clip)" + (f"; skipped {len(skipped)} text-encoder modules (no CLIP given)" if skipped else ""))
        return io.NodeOutput(new_model, new_clip if new_clip is not None else clip, text, ui={"text": [text]})


NODES = (KilnLoadLora, KilnResizeLora, KilnMergeLoras, KilnExtractLora, KilnCompareLoras, KilnInspectLora,
         KilnMergeLoraIntoModel)
