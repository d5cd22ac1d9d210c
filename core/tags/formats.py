"""The tagger formats beside WD14, chosen by reading the model and its tag file.

| format | input | pixels | tag file | output |
|---|---|---|---|---|
| wd14 (SmilingWolf v2/v3) | NHWC, 448 | BGR 0..255, padded white | selected_tags.csv | probabilities |
| pixai (v0.9/v1.0, deepghs ONNX) | NCHW, 448 | RGB, (x/255 - 0.5) / 0.5, padded white | selected_tags.csv | ``prediction``: probabilities |
| cl_tagger (cella110n) | NCHW, 448 | RGB, (x/255 - 0.5) / 0.5, padded white | tag_mapping.json | logits |
| camie (v2) | NCHW, 512 | RGB, ImageNet mean/std, padded with the ImageNet mean colour | *-metadata.json | ``refined_predictions``: logits |
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class TaggerFormat:
    name: str
    nchw: bool = False
    bgr: bool = True
    mean: tuple[float, float, float] | None = None   # None: raw 0..255 values
    std: tuple[float, float, float] | None = None
    pad: tuple[int, int, int] = (255, 255, 255)
    output: str | None = None                       # None: the first output
    logits: bool = False                            # sigmoid the output
    default_size: int = 448                         # when the model's input size is symbolic


WD14 = TaggerFormat("wd14")
PIXAI = TaggerFormat("pixai", nchw=True, bgr=False, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), output="prediction")
CL = TaggerFormat("cl_tagger", nchw=True, bgr=False, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), logits=True)
CAMIE = TaggerFormat("camie", nchw=True, bgr=False, mean=IMAGENET_MEAN, std=IMAGENET_STD,
                     pad=tuple(round(m * 255) for m in IMAGENET_MEAN), output="refined_predictions", logits=True,
                     default_size=512)


def read_format(session, labels_kind: str = "csv", model_name: str = "") -> TaggerFormat:
    """The format of a loaded model: its input layout, its output names and the kind of its tag file
    (``csv``, ``cl_tagger`` or ``camie``, as Labels.from_file found it)."""
    shape = session.get_inputs()[0].shape
    outputs = [o.name for o in session.get_outputs()]
    if len(shape) == 4 and shape[3] == 3:
        return WD14
    if len(shape) != 4 or shape[1] != 3:
        raise ValueError(f"{model_name or 'tagger'}: input shape {shape} is neither NHWC (WD14) nor NCHW with 3 "
                         "channels (pixai, cl_tagger, Camie); not a tagger Kiln knows")
    if labels_kind == "camie" or "refined_predictions" in outputs:
        fmt = CAMIE
    elif labels_kind == "cl_tagger":
        fmt = CL
    elif "prediction" in outputs:
        fmt = PIXAI
    else:
        raise ValueError(f"{model_name or 'tagger'}: an NCHW tagger with outputs {outputs} and a CSV tag list: not "
                         "pixai (whose probabilities are the 'prediction' output); cl_tagger needs its "
                         "tag_mapping.json and Camie its metadata .json beside the model")
    if fmt.output is not None and fmt.output not in outputs:
        fmt = TaggerFormat(**{**fmt.__dict__, "output": None})
    return fmt


def format_input_size(session, fmt: TaggerFormat) -> int:
    """The square input side, read from the model (the format's own size when the model leaves it open)."""
    shape = session.get_inputs()[0].shape
    h, w = (shape[2], shape[3]) if fmt.nchw else (shape[1], shape[2])
    if isinstance(h, int) and isinstance(w, int):
        if h != w:
            raise ValueError(f"tagger input {shape} is not square; the supported taggers take square images")
        return h
    return fmt.default_size


def preprocess_nchw(image: Image.Image, size: int, fmt: TaggerFormat) -> np.ndarray:
    """Fit in a ``size`` square (bicubic), centre on the format's pad colour, normalise, CHW float32."""
    w, h = image.size
    scale = size / max(w, h)
    fit = (max(1, min(size, round(w * scale))), max(1, min(size, round(h * scale))))
    if fit != (w, h):
        image = image.resize(fit, Image.BICUBIC, reducing_gap=3.0)
    canvas = Image.new("RGB", (size, size), fmt.pad)
    canvas.paste(image, ((size - fit[0]) // 2, (size - fit[1]) // 2))
    arr = np.asarray(canvas, dtype=np.float32) / 255.0
    if fmt.bgr:
        arr = arr[:, :, ::-1]
    if fmt.mean is not None:
        arr = (arr - np.asarray(fmt.mean, np.float32)) / np.asarray(fmt.std, np.float32)
    return np.ascontiguousarray(arr.transpose(2, 0, 1))


def to_probabilities(scores: np.ndarray, fmt: TaggerFormat) -> np.ndarray:
    if not fmt.logits:
        return scores
    return 1.0 / (1.0 + np.exp(-np.clip(scores, -60, 60)))
