"""Reading images without losing a run: orientation, modes, bit depth, corrupt files, decompression bombs."""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

IMAGE_EXTENSIONS = {".png", ".jpg", ".jpeg", ".webp", ".bmp"}
MAX_PIXELS = 1 << 28   # ~268 MP: bigger is treated as a decompression bomb


class UnreadableImage(Exception):
    pass


def open_rgb(path: str | Path, background=(255, 255, 255), draft_size: tuple[int, int] | None = None) -> Image.Image:
    """An RGB image, EXIF orientation applied; alpha composited on ``background``; CMYK, 16-bit, greyscale
    and palette images converted. Raises UnreadableImage with the reason."""
    path = Path(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                if im.width * im.height > MAX_PIXELS:
                    raise UnreadableImage(f"{im.width}x{im.height} is too large (decompression bomb guard)")
                full_size = im.size
                swaps = im.getexif().get(0x0112, 1) in (5, 6, 7, 8)   # EXIF orientations that rotate 90
                if draft_size and im.format == "JPEG":
                    im.draft("RGB", draft_size)  # decode JPEGs at a reduced scale when that is enough
                im.load()
                drafted = im.size != full_size
                if swaps or im.getexif().get(0x0112, 1) != 1:
                    im = ImageOps.exif_transpose(im)   # (a copy; only when there is something to undo)
                out = _to_rgb(im, background)
                if drafted:
                    # Callers that need the true (oriented) size read it here.
                    out.info["kiln_draft_scale"] = True
                    out.info["kiln_full_size"] = full_size[::-1] if swaps else full_size
                return out
    except UnreadableImage:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise UnreadableImage(f"decompression bomb guard: {exc}") from exc
    except (OSError, ValueError, SyntaxError) as exc:
        raise UnreadableImage(str(exc) or type(exc).__name__) from exc


def _to_rgb(im: Image.Image, background) -> Image.Image:
    if im.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(im, dtype=np.float64)
        peak = 65535.0 if arr.max() > 255 else 255.0
        im = Image.fromarray((arr / peak * 255).clip(0, 255).astype(np.uint8), "L")
    elif im.mode == "F":
        arr = np.asarray(im, dtype=np.float64)
        im = Image.fromarray((arr.clip(0, 1) * 255).astype(np.uint8), "L")
    if im.mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
    if im.mode in ("RGBA", "LA", "PA"):
        if im.getchannel("A").getextrema() == (255, 255):
            return im.convert("RGB")   # fully opaque: nothing to composite
        rgba = im.convert("RGBA")
        bg = Image.new("RGBA", rgba.size, tuple(background) + (255,))
        return Image.alpha_composite(bg, rgba).convert("RGB")
    if im.mode == "CMYK":
        return im.convert("RGB")
    return im.convert("RGB") if im.mode != "RGB" else im


def read_mask(path: str | Path) -> np.ndarray | None:
    """The alpha channel (0..1) when the image has one, else None."""
    with Image.open(path) as im:
        im = ImageOps.exif_transpose(im)
        if im.mode in ("RGBA", "LA") or (im.mode == "P" and "transparency" in im.info):
            return np.asarray(im.convert("RGBA").getchannel("A"), dtype=np.float32) / 255.0
    return None
