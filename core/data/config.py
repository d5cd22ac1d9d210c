"""What a dataset is made of, as one small value (built by the Load Dataset node), and its check before loading."""
from __future__ import annotations

from dataclasses import dataclass, replace

from ..fields import setting
from ..paths import PathRefused, check_caption_extension
from .buckets import make_buckets


class DatasetError(ValueError):
    """A dataset that cannot train; the message names the folder and the fix."""


@dataclass(frozen=True)
class DatasetConfig:
    path: str                      # root of N_name subfolders, or a flat folder of images
    repeats: int = setting(1, "Repeats per epoch for a flat folder of images (N_name folders carry their own N).",
                           min=1, max=1000)
    reg_path: str = setting("", "Regularization images (N_name subfolders or a flat folder); empty for none. They "
                            "are balanced to the training count each epoch.")
    reg_repeats: int = setting(1, "Repeats for a flat regularization folder.", min=1, max=1000)
    prior_loss_weight: float = setting(1.0, "Loss weight of regularization samples (kohya's prior_loss_weight).",
                                       min=0.0, max=10.0, step=0.05)
    caption_source: str = setting("files", "files: a text file beside each image (same name, caption_extension); "
                                  "phrase: caption_phrase for every image; none: empty captions (the LoRA then "
                                  "always applies).", choices=("files", "phrase", "none"))
    caption_extension: str = setting(".txt", "Extension of the caption files: .txt (most taggers) or .caption. A "
                                     "warning says when the other kind is there instead.")
    caption_phrase: str = setting("", "The caption for every image when caption_source is 'phrase' "
                                  "(e.g. 'zyx woman').")
    resolution: int = setting(512, "Training resolution: buckets keep about resolution x resolution pixels (512 for "
                              "SD1.5, 1024 for SDXL).", min=64, max=4096, step=64)
    min_bucket_reso: int = setting(256, "Smallest bucket side in pixels.", min=64, max=4096, step=64)
    max_bucket_reso: int = setting(1024, "Largest bucket side in pixels.", min=64, max=8192, step=64)
    bucket_reso_steps: int = setting(64, "Bucket sides are multiples of this (64 is safe for every model family).",
                                     min=8, max=512, step=8)
    bucket_no_upscale: bool = setting(False, "Never upscale: an image smaller than the target area keeps its own "
                                      "size (rounded down to the step) and is only cropped.")
    enable_buckets: bool = setting(True, "Aspect-ratio bucketing: images keep their shape. Off: everything is "
                                   "scaled and cropped to a resolution x resolution square.")
    random_crop: bool = setting(False, "After scaling to cover the bucket, crop at a random place each epoch "
                                "instead of the centre.")
    flip_aug: bool = setting(False, "Mirror images at random (leave off for asymmetric subjects: text, logos, side "
                             "partings).")
    color_aug: bool = setting(False, "Small random hue and gamma changes each step. Latents are then encoded every "
                              "step (no latent cache).")
    shuffle_caption: bool = setting(False, "Shuffle the comma-separated tags every step; the first keep_tokens tags "
                                    "stay in place.")
    keep_tokens: int = setting(0, "Leading tags that shuffle and tag dropout never touch (put the trigger word first "
                               "and set 1).", min=0, max=100)
    keep_tokens_separator: str = setting("", "Instead of keep_tokens: tags before this separator (e.g. '|||') stay "
                                         "fixed; a second separator fixes a tail too.")
    caption_dropout_rate: float = setting(0.0, "Chance that a step trains with an empty caption.",
                                          min=0.0, max=1.0, step=0.01)
    tag_dropout_rate: float = setting(0.0, "Chance to drop each (non-kept) tag on a step.", min=0.0, max=1.0, step=0.01)
    caption_prefix: str = setting("", "Put before every caption, outside the shuffle (e.g. the trigger word).")
    caption_suffix: str = setting("", "Put after every caption, outside the shuffle.")
    background: tuple = setting((255, 255, 255), "Colour transparent images are composited on: 'R,G,B', '#rrggbb', "
                                "white or black.")
    # Video clips (.mp4, .webm, .mov, .mkv, .gif) in the same folders; an image is a one-frame clip.
    frame_extraction: str = setting("head", "How clips become training windows (musubi-tuner's names): head = the "
                                    "first frames, chunk = back-to-back windows, slide = a window every frame_stride "
                                    "frames, uniform = frame_sample windows spread evenly, full = the whole clip.",
                                    choices=("head", "chunk", "slide", "uniform", "full"))
    target_frames: int = setting(17, "Frames per clip window, rounded down to what the video VAE encodes whole "
                                 "(4k+1 for Wan and HunyuanVideo, 8k+1 for LTX-2).", min=1, max=1025)
    frame_stride: int = setting(8, "slide: frames between the starts of two windows.", min=1, max=1000)
    frame_sample: int = setting(1, "uniform: windows taken from each clip.", min=1, max=100)
    target_fps: float = setting(0.0, "Resample clips to this frame rate first (0 keeps each clip's own rate; 16 is "
                                "Wan's, 24 HunyuanVideo's and LTX-2's).", min=0.0, max=120.0, step=1.0)
    # Edit-model pairs (core.data.controls): the "before" images beside each image folder, matched by file stem.
    controls: str = setting("none", "Edit LoRAs (Flux Kontext, Qwen-Image-Edit, FLUX.2): none = plain images; auto = "
                            "control images in a 'control' folder beside the images (and control_1..control_3 for "
                            "several), matched by file stem; or another folder base name. The caption is the edit "
                            "instruction.")
    control_resolution: str = setting("target", "Edit LoRAs: the control images' size. target = cut exactly like "
                                      "their target (same bucket, crop and flip); family = the edit model's own "
                                      "reference size (Qwen-Image-Edit and Kontext ~1024x1024 pixels, FLUX.2 the "
                                      "target's); a number N = ~N x N pixels. Another size keeps the target's crop "
                                      "box and aspect.")

    def replace(self, **changes) -> "DatasetConfig":
        return replace(self, **changes)


def parse_color(text: str) -> tuple[int, int, int]:
    """'255,255,255', '#ffffff' or a few names -> (r, g, b); for the compositing background."""
    named = {"white": (255, 255, 255), "black": (0, 0, 0), "grey": (127, 127, 127), "gray": (127, 127, 127)}
    t = str(text).strip().lower()
    if t in named:
        return named[t]
    try:
        if t.startswith("#") and len(t) == 7:
            return tuple(int(t[i:i + 2], 16) for i in (1, 3, 5))
        parts = [int(float(p)) for p in t.replace(";", ",").split(",")]
        if len(parts) == 3 and all(0 <= p <= 255 for p in parts):
            return tuple(parts)
    except ValueError:
        pass
    raise ValueError(f"background colour {text!r} not understood: use 'R,G,B' (0-255), '#rrggbb', white or black")


def check_config(config: DatasetConfig) -> DatasetConfig:
    """The config with its caption extension and background normalised, or DatasetError naming the fix."""
    if config.caption_source not in ("files", "phrase", "none"):
        raise DatasetError(f"caption_source must be files, phrase or none (got {config.caption_source!r})")
    if config.caption_source == "phrase" and not config.caption_phrase.strip():
        raise DatasetError("caption_source is 'phrase' but caption_phrase is empty: type the phrase (e.g. your "
                           "trigger word) or use caption_source 'none'.")
    try:
        ext = check_caption_extension(config.caption_extension)
    except PathRefused as exc:
        raise DatasetError(str(exc)) from None
    if config.frame_extraction not in ("head", "chunk", "slide", "uniform", "full"):
        raise DatasetError(f"frame_extraction must be head, chunk, slide, uniform or full "
                           f"(got {config.frame_extraction!r})")
    if config.controls.strip().lower() not in ("", "none", "auto"):
        from .controls import control_names
        control_names(config.controls)
    from .controls import control_side
    control_side(config.control_resolution)
    if config.repeats < 1 or config.reg_repeats < 1:
        raise DatasetError(f"repeats must be at least 1 (got {config.repeats}, reg {config.reg_repeats}).")
    if config.enable_buckets and not config.bucket_no_upscale:
        try:
            make_buckets(config.resolution, config.min_bucket_reso, config.max_bucket_reso, config.bucket_reso_steps)
        except ValueError as exc:
            raise DatasetError(f"bucket settings: {exc}") from exc
    return replace(config, caption_extension=ext, background=tuple(int(c) for c in config.background))
