"""What a dataset is made of, as one small value (built by the Load Dataset node)."""
from __future__ import annotations

from dataclasses import dataclass, replace


@dataclass(frozen=True)
class DatasetConfig:
    path: str                      # root of N_name subfolders, or a flat folder of images
    repeats: int = 1               # for a flat folder (an N_name folder gives its own N)
    reg_path: str = ""             # regularization images (N_name or flat), optional
    reg_repeats: int = 1
    prior_loss_weight: float = 1.0
    caption_source: str = "files"  # "files" | "phrase" | "none"
    caption_extension: str = ".txt"
    caption_phrase: str = ""
    resolution: int = 512          # target area = resolution**2
    min_bucket_reso: int = 256
    max_bucket_reso: int = 1024
    bucket_reso_steps: int = 64
    bucket_no_upscale: bool = False
    enable_buckets: bool = True
    random_crop: bool = False
    flip_aug: bool = False
    color_aug: bool = False
    shuffle_caption: bool = False
    keep_tokens: int = 0
    keep_tokens_separator: str = ""
    caption_dropout_rate: float = 0.0
    tag_dropout_rate: float = 0.0
    caption_prefix: str = ""
    caption_suffix: str = ""
    background: tuple = (255, 255, 255)   # for compositing RGBA/LA/P

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
