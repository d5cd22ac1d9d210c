"""Images in and out: reading without losing a run (orientation, modes, bit depth, corrupt files, decompression
bombs), and the one conversion between the float images Kiln passes around ([H, W, 3] float32 in 0..1,
ComfyUI's IMAGE layout) and 8-bit pixels (PIL, PNG files)."""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps


IMAGE_EXTENSIONS = {".png", ".jpg", ".jpeg", ".webp", ".bmp"}
# Bigger than this is treated as a decompression bomb (PIL itself refuses above 2 x MAX_IMAGE_PIXELS,
# ~179 MP, while opening; this is Kiln's own limit, checked from the header before any pixel is decoded).
MAX_PIXELS = 1 << 27   # ~134 MP
_ROTATING = (5, 6, 7, 8)   # EXIF orientations that swap width and height
_ORIENTATION = 0x0112


class UnreadableImage(Exception):
    pass


def oriented_size(im: Image.Image) -> tuple[int, int]:
    """Size after EXIF orientation (from the header)."""
    return im.size[::-1] if im.getexif().get(_ORIENTATION, 1) in _ROTATING else im.size


def open_rgb(source: str | Path | bytes, background=(255, 255, 255),
             draft_size: tuple[int, int] | None = None) -> Image.Image:
    """An RGB image, EXIF orientation applied; alpha composited on ``background``; CMYK, 16-bit, greyscale
    and palette images converted. ``source`` is a path or the file's bytes. ``draft_size`` (oriented)
    lets a JPEG decode at a reduced scale when that still covers it. Raises UnreadableImage with the reason.

    Thread-safe: no global PIL or warnings state is touched (the bomb check is done here from the header),
    so many images can be read at once (PIL releases the GIL while decoding and resizing)."""
    fp = io.BytesIO(source) if isinstance(source, (bytes, bytearray)) else source
    try:
        with Image.open(fp) as im:
            if im.width * im.height > MAX_PIXELS:
                raise UnreadableImage(f"{im.width}x{im.height} is too large (decompression bomb guard, "
                                      f"limit {MAX_PIXELS} pixels)")
            orientation = im.getexif().get(_ORIENTATION, 1)
            if draft_size and im.format == "JPEG":
                dw, dh = draft_size[::-1] if orientation in _ROTATING else draft_size
                im.draft("RGB", (dw, dh))   # DCT scaling: never smaller than the requested size
            im.load()   # truncated/corrupt data raises here
            if orientation != 1:
                im = ImageOps.exif_transpose(im)
            return _to_rgb(im, background)
    except UnreadableImage:
        raise
    except Image.DecompressionBombError as exc:
        raise UnreadableImage(f"decompression bomb guard: {exc}") from exc
    except (OSError, ValueError, SyntaxError, EOFError, Image.UnidentifiedImageError) as exc:
        raise UnreadableImage(str(exc) or type(exc).__name__) from exc


def _to_rgb(im: Image.Image, background) -> Image.Image:
    if im.mode.startswith("I;16"):
        arr = np.asarray(im, dtype=np.float32)
        im = Image.fromarray((arr * (255.0 / 65535.0) + 0.5).clip(0, 255).astype(np.uint8), "L")
    elif im.mode == "I":
        # 32-bit integer: 16-bit PNGs open this way in older Pillow; 8-bit data keeps its scale.
        arr = np.asarray(im, dtype=np.float64)
        peak = 65535.0 if arr.max() > 255 else 255.0
        im = Image.fromarray((arr / peak * 255 + 0.5).clip(0, 255).astype(np.uint8), "L")
    elif im.mode == "F":
        arr = np.asarray(im, dtype=np.float64)
        im = Image.fromarray(to_uint8(arr), "L")
    if im.mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
    elif im.mode == "L" and "transparency" in im.info:
        im = im.convert("LA")
    elif im.mode == "RGB" and "transparency" in im.info:
        im = im.convert("RGBA")
    if im.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        if im.getchannel("A").getextrema() == (255, 255):
            return im.convert("RGB")   # fully opaque: nothing to composite
        rgba = im.convert("RGBA")
        bg = Image.new("RGBA", rgba.size, tuple(background) + (255,))
        return Image.alpha_composite(bg, rgba).convert("RGB")
    if im.mode == "CMYK":
        return _cmyk_to_rgb(im)
    return im.convert("RGB") if im.mode != "RGB" else im


def _cmyk_to_rgb(im: Image.Image) -> Image.Image:
    """Through the embedded ICC profile when there is one (print CMYK differs a lot from naive CMYK)."""
    icc = im.info.get("icc_profile")
    if icc:
        try:
            from PIL import ImageCms
            src = ImageCms.ImageCmsProfile(io.BytesIO(icc))
            return ImageCms.profileToProfile(im, src, ImageCms.createProfile("sRGB"), outputMode="RGB")
        except Exception:   # a broken or unsupported profile: the plain conversion below is still usable
            pass
    return im.convert("RGB")


def read_mask(path: str | Path) -> np.ndarray | None:
    """The alpha channel (0..1) when the image has one, else None."""
    with Image.open(path) as im:
        im = ImageOps.exif_transpose(im)
        if im.mode in ("RGBA", "LA") or (im.mode == "P" and "transparency" in im.info):
            return np.asarray(im.convert("RGBA").getchannel("A"), dtype=np.float32) / 255.0
    return None


def to_uint8(array) -> np.ndarray:
    """An image of floats in 0..1 as 8-bit pixels (clipped, rounded to the nearest level)."""
    return (np.clip(np.asarray(array, dtype=np.float32), 0.0, 1.0) * 255.0).round().astype(np.uint8)


def to_float(image: Image.Image | np.ndarray) -> np.ndarray:
    """8-bit pixels (a PIL image or a uint8 array) as floats in 0..1."""
    return np.asarray(image, dtype=np.float32) / 255.0
