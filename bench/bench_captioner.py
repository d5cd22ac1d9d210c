"""Caption the same images with the same tiny random vision-language model two ways, in one run: Kiln's
captioner (one model load, batched generate, the next batch decoded while one generates) and the loop of
the popular ComfyUI caption nodes when pointed at a folder: processor and model loaded for every image, one
image per generate call. Prints captions per second for both and the ratio (medians of alternating rounds),
and checks that both give the same captions.

    .venv/bin/python bench/bench_captioner.py [--family qwen2_vl] [--images 16] [--batch 8] [--tokens 24] [--repeats 3]
"""
from __future__ import annotations

import argparse
import gc
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))
import cli  # noqa: E402

cli.load_pack()
from kiln.core.caption.combine import clean_caption  # noqa: E402
from kiln.core.caption.vlm import CaptionSettings, Captioner, caption_images, fit_image  # noqa: E402
from tiny_vlm import FAMILIES, write_tiny_vlm  # noqa: E402


def make_images(folder: Path, n: int) -> list[Path]:
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    sizes = [(1024, 1536), (1536, 1024), (1200, 1200), (896, 1344)]
    paths = []
    for i in range(n):
        w, h = sizes[i % len(sizes)]
        im = Image.fromarray(rng.integers(0, 255, (h // 16, w // 16, 3), dtype=np.uint8)).resize((w, h))
        p = folder / f"{i:03d}.{'jpg' if i % 2 else 'png'}"
        im.save(p, quality=92) if p.suffix == ".jpg" else im.save(p)
        paths.append(p)
    return paths


def kiln_run(paths, model_dir, settings, batch):
    captioner = Captioner(model_dir)
    try:
        return [r.caption for r in caption_images(paths, captioner, settings, batch_size=batch)]
    finally:
        captioner.close()


def per_image_loop(paths, model_dir, settings):
    """Per image: AutoProcessor + model from_pretrained, open the image, one generate, decode, drop the
    model (what caption nodes do when run image by image without keeping the model loaded)."""
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor
    probe = Captioner(model_dir)   # only for the prompt text, built the same way
    prompt, encoder_decoder = probe.prompt(settings), probe.encoder_decoder
    probe.close()
    out = []
    for p in paths:
        processor = AutoProcessor.from_pretrained(model_dir)
        model = AutoModelForImageTextToText.from_pretrained(model_dir).eval()
        img = fit_image(Image.open(p).convert("RGB"), settings.max_image_side)
        inputs = processor(text=[prompt], images=[img], return_tensors="pt")
        with torch.inference_mode():
            ids = model.generate(**inputs, max_new_tokens=settings.max_new_tokens, do_sample=False, num_beams=1)
        if not encoder_decoder:
            ids = ids[:, inputs["input_ids"].shape[1]:]
        out.append(clean_caption(processor.batch_decode(ids, skip_special_tokens=True)[0]))
        del model, processor
        gc.collect()
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--family", default="qwen2_vl", choices=FAMILIES)
    ap.add_argument("--images", type=int, default=16)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--tokens", type=int, default=24)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    import logging
    import transformers
    transformers.logging.set_verbosity_error()
    logging.getLogger("transformers").setLevel(logging.ERROR)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model_dir = write_tiny_vlm(tmp / f"tiny-{args.family}", args.family)
        paths = make_images(tmp / "images", args.images)
        settings = CaptionSettings(template="short", max_new_tokens=args.tokens)
        kiln_times, loop_times = [], []
        for r in range(args.repeats):
            t = time.perf_counter()
            ours = kiln_run(paths, model_dir, settings, args.batch)
            kiln_times.append(time.perf_counter() - t)
            t = time.perf_counter()
            theirs = per_image_loop(paths, model_dir, settings)
            loop_times.append(time.perf_counter() - t)
            print(f"round {r + 1}: kiln {kiln_times[-1]:.2f}s, per-image loop {loop_times[-1]:.2f}s")
        same = sum(a == b for a, b in zip(ours, theirs))
        k, l = statistics.median(kiln_times), statistics.median(loop_times)
        print(f"{args.family}, {args.images} images, batch {args.batch}, {args.tokens} new tokens")
        print(f"kiln captioner:  {args.images / k:.2f} captions/s")
        print(f"per-image loads: {args.images / l:.2f} captions/s")
        print(f"ratio: {l / k:.2f}x  (same caption for {same}/{len(paths)} images)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
