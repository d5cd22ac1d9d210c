"""LoRA tool nodes: load any LoRA file, resize, merge, extract from two models, compare, inspect."""
from __future__ import annotations


from .. import host
from ..core.lora.formats import to_kohya
from ..core.lora.io import load_lora_file
from ..core.net.blocks import parse_weights
from ..core.tools.extract import ExtractSpec, extract_lora
from ..core.plots import bar_chart
from ..core.tools.inspect import (block_norms, compare_loras, comparison_plot, comparison_text,
                                  inspect_text, module_infos)
from ..core.tools.merge import check_against_model, merge_loras, without_modules
from ..core.tools.resize import ResizeSpec, format_report, resize_lora
from ..host.training import apply_lora, kohya_names_for_model, patched_weights

RANK_METHODS = ["fixed", "sv_ratio", "sv_fro", "sv_cumulative"]



class KilnLoadLora:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"lora_name": (host.lora_names(), {"tooltip": "A LoRA in the loras folder: kohya, LyCORIS, ComfyUI-native or diffusers/PEFT keys."})}}

    RETURN_TYPES = ("KILN_LORA",)
    RETURN_NAMES = ("lora",)
    FUNCTION = "load"
    CATEGORY = "Kiln/LoRA"
    DESCRIPTION = "Read a LoRA file (safetensors only; never unpickles) into a Kiln LoRA value with kohya key names."

    def load(self, lora_name):
        return (to_kohya(load_lora_file(host.lora_path(lora_name))),)


class KilnResizeLora:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "lora": ("KILN_LORA", {"tooltip": "The LoRA to resize."}),
            "method": (RANK_METHODS, {"default": "fixed", "tooltip": "fixed rank, or dynamic per layer: sv_ratio (keep singular values >= max/ratio), sv_fro (keep this fraction of the energy), sv_cumulative (this fraction of the sum of singular values)."}),
            "value": ("FLOAT", {"default": 32.0, "min": 0.0, "max": 4096.0, "step": 0.01, "tooltip": "The rank for 'fixed'; the ratio or fraction (e.g. 0.9) for the dynamic methods."}),
            "max_rank": ("INT", {"default": 256, "min": 1, "max": 4096, "tooltip": "Upper bound for dynamic methods."}),
        }}

    RETURN_TYPES = ("KILN_LORA", "STRING")
    RETURN_NAMES = ("lora", "report")
    FUNCTION = "resize"
    CATEGORY = "Kiln/LoRA"
    DESCRIPTION = "Resize exactly from the factors (QR + small SVD) for LoRA layers; randomized SVD for LoHa/LoKr/diff."

    def resize(self, lora, method, value, max_rank):
        pbar = host.progress_bar(len(lora.modules))
        out, report = resize_lora(lora, ResizeSpec(method, value, max_rank),
                                  progress=lambda: (host.throw_if_interrupted(), pbar.update(1)))
        text = format_report(report)
        return {"ui": {"text": [text]}, "result": (out, text)}


class KilnMergeLoras:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "lora_a": ("KILN_LORA", {"tooltip": "First LoRA."}),
            "weight_a": ("FLOAT", {"default": 1.0, "min": -10.0, "max": 10.0, "step": 0.01, "tooltip": "Weight of the first LoRA."}),
            "lora_b": ("KILN_LORA", {"tooltip": "Second LoRA."}),
            "weight_b": ("FLOAT", {"default": 1.0, "min": -10.0, "max": 10.0, "step": 0.01, "tooltip": "Weight of the second LoRA."}),
            "rank": ("INT", {"default": 0, "min": 0, "max": 4096, "tooltip": "0 keeps the merge exact (ranks add up); > 0 compresses to this rank by the exact factored SVD."}),
        }, "optional": {
            "lora_c": ("KILN_LORA", {"tooltip": "Optional third LoRA."}),
            "weight_c": ("FLOAT", {"default": 1.0, "min": -10.0, "max": 10.0, "step": 0.01, "tooltip": "Weight of the third LoRA."}),
            "block_weights": ("STRING", {"default": "", "multiline": True, "tooltip": "Per-block factors applied to every LoRA: blocks IN00..IN11, MID, OUT00..OUT11, TE, BASE, or kohya module patterns, e.g. TE=0, OUT04=0.5, lora_unet_up_blocks_1_*=0.5 (last match wins)."}),
        }}

    RETURN_TYPES = ("KILN_LORA",)
    RETURN_NAMES = ("lora",)
    FUNCTION = "merge"
    CATEGORY = "Kiln/LoRA"
    DESCRIPTION = "Merge LoRAs so the result's effect is exactly the weighted sum of their effects (concatenated factors)."

    def merge(self, lora_a, weight_a, lora_b, weight_b, rank, lora_c=None, weight_c=1.0, block_weights=""):
        items = [(lora_a, weight_a), (lora_b, weight_b)] + ([(lora_c, weight_c)] if lora_c is not None else [])
        weights = parse_weights(block_weights, "Kiln Merge LoRAs block_weights")
        names = ["lora_a", "lora_b"] + (["lora_c"] if lora_c is not None else [])
        return (merge_loras(items, rank or None, weights, names),)


class KilnExtractLora:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model_tuned": ("MODEL", {"tooltip": "Model A (e.g. a fine-tune)."}),
            "model_base": ("MODEL", {"tooltip": "Model B (the base it was tuned from). The LoRA is A - B."}),
            "method": (["fixed", "sv_fro", "sv_ratio"], {"default": "fixed", "tooltip": "fixed rank, or per layer: sv_fro keeps this fraction of the layer's energy; sv_ratio keeps singular values >= max/ratio."}),
            "value": ("FLOAT", {"default": 32.0, "min": 0.0, "max": 4096.0, "step": 0.01, "tooltip": "Rank for fixed, fraction/ratio otherwise."}),
            "max_rank": ("INT", {"default": 128, "min": 1, "max": 4096, "tooltip": "Upper bound per layer."}),
            "conv_rank": ("INT", {"default": 0, "min": 0, "max": 4096, "tooltip": "Rank for 3x3 convs (0 skips them)."}),
            "clamp_quantile": ("FLOAT", {"default": 0.99, "min": 0.5, "max": 1.0, "step": 0.001, "tooltip": "Clamp factor values at this quantile (1 = off), like kohya's extractor."}),
        }, "optional": {
            "clip_tuned": ("CLIP", {"tooltip": "Text encoder of A (to extract text-encoder layers too)."}),
            "clip_base": ("CLIP", {"tooltip": "Text encoder of B."}),
            "oversample": ("INT", {"default": 16, "min": 0, "max": 256, "tooltip": "Randomized SVD oversampling."}),
            "power_iterations": ("INT", {"default": 6, "min": 0, "max": 10, "tooltip": "Randomized SVD power iterations."}),
        }}

    RETURN_TYPES = ("KILN_LORA", "STRING")
    RETURN_NAMES = ("lora", "report")
    FUNCTION = "extract"
    CATEGORY = "Kiln/LoRA"
    DESCRIPTION = "Extract a LoRA from the difference of two models with a randomized SVD per layer."

    def extract(self, model_tuned, model_base, method, value, max_rank, conv_rank, clamp_quantile,
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
        from ..host.bake import base_model_version
        lora, report = extract_lora(sd_a, sd_b, names, spec, host_names=host_names,
                                    progress=lambda: (host.throw_if_interrupted(), pbar.update(1)),
                                    base_model_version=base_model_version(model_base), title="extracted LoRA")
        text = format_report(report)
        return {"ui": {"text": [text]}, "result": (lora, text)}


class KilnCompareLoras:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"lora_a": ("KILN_LORA", {"tooltip": "First LoRA (A)."}),
                             "lora_b": ("KILN_LORA", {"tooltip": "Second LoRA (B)."})}}

    RETURN_TYPES = ("STRING", "IMAGE")
    RETURN_NAMES = ("table", "plot")
    FUNCTION = "compare"
    OUTPUT_NODE = True
    CATEGORY = "Kiln/LoRA"
    DESCRIPTION = "Per-module cosine similarity and norm ratio (B/A) of two LoRAs' deltas, as a table and a plot."

    def compare(self, lora_a, lora_b):
        rows = compare_loras(lora_a, lora_b)
        text = comparison_text(rows)
        return {"ui": {"text": [text]}, "result": (text, host.image_batch(comparison_plot(rows)))}


class KilnInspectLora:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"lora": ("KILN_LORA", {"tooltip": "The LoRA to describe."})}}

    RETURN_TYPES = ("STRING", "IMAGE")
    RETURN_NAMES = ("report", "block_norms")
    FUNCTION = "inspect"
    OUTPUT_NODE = True
    CATEGORY = "Kiln/LoRA"
    DESCRIPTION = "Modules, ranks, alphas, norms, algorithm, base model and ss_* metadata, plus a per-block norm plot."

    def inspect(self, lora):
        text = inspect_text(lora)
        plot = bar_chart(block_norms(module_infos(lora)), "sum of delta norms per block")
        return {"ui": {"text": [text]}, "result": (text, host.image_batch(plot))}


def _layer_shapes(model, clip) -> dict:
    """kohya module name -> the model's weight shape, under both UNet spellings (diffusers-style names as
    kohya writes them, and LDM-style ``lora_unet_input_blocks_...`` names), which the host's loader accepts."""
    names = kohya_names_for_model(model, clip)
    sd = dict(model.model.state_dict())
    if clip is not None:
        sd.update(clip.cond_stage_model.state_dict())
    shapes = {}
    for kohya, key in names.items():
        if key in sd:
            shapes[kohya] = tuple(sd[key].shape)
            if key.startswith("diffusion_model."):
                shapes["lora_unet_" + key[len("diffusion_model."):-len(".weight")].replace(".", "_")] = tuple(sd[key].shape)
    return shapes


class KilnMergeLoraIntoModel:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model": ("MODEL", {"tooltip": "The model to merge the LoRA into."}),
            "lora": ("KILN_LORA", {"tooltip": "The LoRA to merge (from Load, Train, Resize, Merge or Extract)."}),
            "strength_model": ("FLOAT", {"default": 1.0, "min": -10.0, "max": 10.0, "step": 0.01, "tooltip": "How much of the LoRA's UNet delta to add."}),
        }, "optional": {
            "clip": ("CLIP", {"tooltip": "The text encoder, to merge the LoRA's text-encoder layers too (they are skipped without it)."}),
            "strength_clip": ("FLOAT", {"default": 1.0, "min": -10.0, "max": 10.0, "step": 0.01, "tooltip": "How much of the LoRA's text-encoder delta to add."}),
            "block_weights": ("STRING", {"default": "", "multiline": True, "tooltip": "Per-block factors: IN00..IN11, MID, OUT00..OUT11, TE, BASE, or kohya module patterns, e.g. OUT04=0.5, TE=0 (last match wins)."}),
        }}

    RETURN_TYPES = ("MODEL", "CLIP", "STRING")
    RETURN_NAMES = ("model", "clip", "report")
    FUNCTION = "merge"
    CATEGORY = "Kiln/LoRA"
    DESCRIPTION = ("Merge a LoRA into a model after checking every module against the model's layers (a clear error "
                   "naming the module on a shape or base-model mismatch). Save the result with the host's Save "
                   "Checkpoint node.")

    def merge(self, model, lora, strength_model, clip=None, strength_clip=1.0, block_weights=""):
        weights = parse_weights(block_weights, "Kiln Merge LoRA Into Model block_weights")
        if weights:
            lora = merge_loras([(lora, 1.0)], block_weights=weights)
        skipped = check_against_model(lora, _layer_shapes(model, clip))
        if skipped:
            lora = without_modules(lora, skipped)
        new_model, new_clip = apply_lora(model, clip, lora, strength_model, strength_clip)
        text = (f"merged {len(lora.modules)} modules at strength {strength_model:g} (model) / {strength_clip:g} (clip)"
                + (f"; skipped {len(skipped)} text-encoder modules (no CLIP given)" if skipped else ""))
        return {"ui": {"text": [text]}, "result": (new_model, new_clip if new_clip is not None else clip, text)}


NODE_CLASS_MAPPINGS = {"KilnLoadLora": KilnLoadLora, "KilnResizeLora": KilnResizeLora, "KilnMergeLoras": KilnMergeLoras,
                       "KilnExtractLora": KilnExtractLora, "KilnCompareLoras": KilnCompareLoras,
                       "KilnInspectLora": KilnInspectLora, "KilnMergeLoraIntoModel": KilnMergeLoraIntoModel}
NODE_DISPLAY_NAME_MAPPINGS = {"KilnLoadLora": "Kiln Load LoRA", "KilnResizeLora": "Kiln Resize LoRA",
                              "KilnMergeLoras": "Kiln Merge LoRAs", "KilnExtractLora": "Kiln Extract LoRA",
                              "KilnCompareLoras": "Kiln Compare LoRAs", "KilnInspectLora": "Kiln Inspect LoRA",
                              "KilnMergeLoraIntoModel": "Kiln Merge LoRA Into Model"}
