"""The batched captioner: one transformers model load per run, images decoded a batch ahead, greedy
generation (the same caption every run), interrupt checked between generated tokens."""
from __future__ import annotations

import gc
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

from PIL import Image

from ..data.images import UnreadableImage, open_rgb
from .combine import clean_caption
from .models import family_of, read_config
from .instructions import chat_messages, florence_task, prompt_text

log = logging.getLogger("kiln")


@dataclass(frozen=True)
class CaptionSettings:
    template: str = "training"
    custom_prompt: str = ""
    max_new_tokens: int = 256
    # Qwen-VL processors turn a 4k image into thousands of tokens; captions don't get better for it.
    max_image_side: int = 768


@dataclass(frozen=True)
class CaptionResult:
    path: Path | None
    caption: str


def fit_image(image: Image.Image, max_side: int) -> Image.Image:
    """Downscale so the longer side is at most ``max_side`` (0: as is); never upscale."""
    w, h = image.size
    if max_side <= 0 or max(w, h) <= max_side:
        return image
    scale = max_side / max(w, h)
    return image.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.BICUBIC, reducing_gap=3.0)


class CaptionModelError(ValueError):
    pass


class Captioner:
    """A vision-language model and its processor, loaded once from a model folder."""

    def __init__(self, folder: Path, device="cpu", dtype=None, name: str | None = None):
        import torch
        from transformers import AutoModelForImageTextToText, AutoProcessor
        self.folder = Path(folder)
        self.name = name or self.folder.name
        config = read_config(self.folder)
        self.family = family_of(self.folder)
        self.encoder_decoder = bool(config.get("is_encoder_decoder"))
        self.device = torch.device(device)
        self.dtype = dtype or torch.float32
        try:
            # Never trust_remote_code: a model folder must not run its own Python inside the host.
            self.processor = AutoProcessor.from_pretrained(self.folder)
            self.model = AutoModelForImageTextToText.from_pretrained(self.folder, dtype=self.dtype)
        except (ValueError, KeyError, OSError, TypeError) as exc:
            import transformers
            from transformers.models.auto.modeling_auto import MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES
            model_type = config.get("model_type", "")
            if config.get("auto_map"):
                hint = (" It ships its own modelling code (auto_map in config.json), which Kiln does not run: use "
                        "a version converted to transformers' native format (for Florence-2: florence-community/"
                        "Florence-2-base or -large).")
            elif model_type not in MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES:
                hint = (f" transformers {transformers.__version__} has no image-text-to-text model of type "
                        f"{model_type!r}: a newer transformers may know it, or it is not a captioning model.")
            else:
                hint = ""
            raise CaptionModelError(f"{self.folder}: transformers could not load this captioning model "
                                    f"({type(exc).__name__}: {exc}).{hint}") from exc
        self.model.to(self.device).eval()
        tokenizer = getattr(self.processor, "tokenizer", None)
        if tokenizer is not None and not self.encoder_decoder:
            tokenizer.padding_side = "left"   # decoder-only models continue from the right edge of each row

    def prompt(self, s: CaptionSettings) -> str:
        if self.family == "florence2":
            return florence_task(s.template, s.custom_prompt, self.name)
        messages = chat_messages(self.family, prompt_text(s.template, s.custom_prompt))
        return self.processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)

    def caption(self, images: list[Image.Image], s: CaptionSettings,
                should_stop: Callable[[], None] | None = None) -> list[str]:
        """Captions for one batch of RGB images, in order."""
        import torch
        from transformers import StoppingCriteria, StoppingCriteriaList
        text = self.prompt(s)
        inputs = self.processor(text=[text] * len(images), images=list(images), padding=True, return_tensors="pt")
        inputs = inputs.to(self.device)
        for key, value in inputs.items():
            if torch.is_tensor(value) and value.is_floating_point():
                inputs[key] = value.to(self.dtype)

        class _Check(StoppingCriteria):
            """Runs the host's interrupt check after every token (it raises to stop the run)."""
            def __call__(self, input_ids, scores, **kwargs):
                if should_stop is not None:
                    should_stop()
                return torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)

        with torch.inference_mode():
            out = self.model.generate(**inputs, max_new_tokens=s.max_new_tokens, do_sample=False, num_beams=1,
                                      stopping_criteria=StoppingCriteriaList([_Check()]))
        if not self.encoder_decoder:
            out = out[:, inputs["input_ids"].shape[1]:]
        decoded = self.processor.batch_decode(out, skip_special_tokens=True)
        return [clean_caption(t) for t in decoded]

    def close(self) -> None:
        """Drop the weights (the caller then lets the host's memory manager reclaim the device memory)."""
        self.model = None
        self.processor = None
        gc.collect()


def _open(item, max_side: int):
    try:
        img = open_rgb(item, draft_size=(max_side, max_side) if max_side > 0 else None) if isinstance(item, (str, Path)) else item.convert("RGB")
    except UnreadableImage as exc:
        return None, str(exc)
    return fit_image(img, max_side), None


def caption_images(images: Iterable, captioner: Captioner, settings: CaptionSettings, batch_size: int = 4,
                   progress: Callable[[int], None] | None = None, should_stop: Callable[[], None] | None = None,
                   warn: Callable[[str], None] = log.warning) -> list[CaptionResult]:
    """images: paths or PIL images, captioned in order, ``batch_size`` per generate call. The next batch
    is decoded in threads while the current one generates. ``progress`` gets the count after each batch;
    ``should_stop`` runs after every token and stops the run by raising."""
    items = list(images)
    batches = [items[i:i + max(1, batch_size)] for i in range(0, len(items), max(1, batch_size))]
    results: list[CaptionResult] = []
    skipped: list[str] = []
    with ThreadPoolExecutor(2, thread_name_prefix="kiln-caption-decode") as pool:
        pending = [pool.submit(_open, it, settings.max_image_side) for it in batches[0]] if batches else []
        for i, batch in enumerate(batches):
            opened = [f.result() for f in pending]
            pending = ([pool.submit(_open, it, settings.max_image_side) for it in batches[i + 1]]
                       if i + 1 < len(batches) else [])
            good = [(it, img) for it, (img, err) in zip(batch, opened) if img is not None]
            skipped += [f"{Path(it).name} ({err})" for it, (img, err) in zip(batch, opened) if img is None]
            if good:
                texts = captioner.caption([img for _, img in good], settings, should_stop)
                for (item, _), text in zip(good, texts):
                    results.append(CaptionResult(Path(item) if isinstance(item, (str, Path)) else None, text))
            if progress:
                progress(len(batch))
    if skipped:
        warn(f"Kiln: the captioner skipped {len(skipped)} unreadable image(s): {', '.join(skipped)}")
    return results
