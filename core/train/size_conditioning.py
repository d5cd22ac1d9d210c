"""SDXL's size and crop micro-conditioning for each training image, as kohya's SDXL training computes it:
the image's original size, the top-left corner of its crop inside the scaled image (mirrored when the
sample is flipped, since the crop then sits at the other side of the picture the model sees), and the
bucket as the target size. Sampling nodes (CLIPTextEncodeSDXL) take the same three pairs."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SizeConditioning:
    original: tuple[int, int]   # (width, height) of the image file, after EXIF orientation
    crop: tuple[int, int]       # (left, top) of the bucket crop in the scaled image
    target: tuple[int, int]     # (width, height): the bucket


def size_conditioning(dataset, ref) -> SizeConditioning:
    """For one planned sample (a core.data SampleRef) of ``dataset``."""
    entry = dataset.images[ref.index]
    scaled_w, _ = dataset.scaled_size(entry, ref.bucket)
    left, top = ref.crop
    if ref.flip:
        left = scaled_w - ref.bucket[0] - left
    return SizeConditioning((int(entry.size[0]), int(entry.size[1])), (int(left), int(top)),
                            (int(ref.bucket[0]), int(ref.bucket[1])))
