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
