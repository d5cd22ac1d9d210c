"""SDXL trains with each image's size and crop micro-conditioning (kohya's original size, crop top-left,
target size), and those values reach the host's SDXL adm vector image by image."""
import numpy as np
import pytest
import torch
from PIL import Image

from conftest import REPO

SIZES = [(96, 64), (64, 112), (80, 80)]   # (width, height) of the three files


def _dataset(tmp_path):
    from kiln.core.data import DatasetConfig, load_dataset
    folder = tmp_path / "1_sizes"
    folder.mkdir(parents=True)
    for i, (w, h) in enumerate(SIZES):
        rng = np.random.default_rng(i)
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(folder / f"img{i}.png")
        (folder / f"img{i}.txt").write_text(f"kiln shapes, picture {i}")
    return load_dataset(DatasetConfig(path=str(tmp_path), resolution=64, min_bucket_reso=64, max_bucket_reso=128,
                                      bucket_reso_steps=64, random_crop=True, flip_aug=True))


def test_size_conditioning_mirrors_the_crop_when_flipped():
    from kiln.core.data.plan import SampleRef
    from kiln.core.train.size_conditioning import size_conditioning

    class Entry:
        size = (300, 200)

    class Data:
        images = [Entry()]

        def scaled_size(self, entry, bucket):
            return (96, 64)

    plain = size_conditioning(Data(), SampleRef(0, (64, 64), (10, 0), False, False))
    flipped = size_conditioning(Data(), SampleRef(0, (64, 64), (10, 0), True, False))
    assert plain.original == flipped.original == (300, 200) and plain.target == (64, 64)
    assert plain.crop == (10, 0) and flipped.crop == (96 - 64 - 10, 0)


def test_sdxl_training_feeds_each_images_size_and_crop_to_the_adm(host, tmp_path):
    import comfy.model_base
    from kiln.core.net.spec import NetworkSpec
    from kiln.core.train.loop import TrainConfig
    from kiln.core.train.optim import OptimizerSpec
    from kiln.devtools import family_fixtures as ff
    from kiln.host.bake import SaveSpec, bake
    import nodes
    model = ff.config_built_model("sdxl")
    assert isinstance(model.model, comfy.model_base.SDXL)
    assets = ff.ensure_family_assets("sdxl", REPO / ".cache" / "test-assets")
    with torch.inference_mode():
        vae = nodes.VAELoader().load_vae(assets.vae_name)[0]
    clip = ff.tiny_text_encoder("sdxl")
    dataset = _dataset(tmp_path)
    base = model.model
    real = base.extra_conds
    seen = []

    def recording_extra_conds(**kwargs):
        out = real(**kwargs)
        # Training steps (samples and probes run without gradients; the pre-flight's memory trace of one
        # step is not a training step and passes no sizes).
        if torch.is_grad_enabled() and "target_width" in kwargs:
            seen.append((kwargs, out["y"].cond.detach().clone()))
        return out
    base.extra_conds = recording_extra_conds
    try:
        with torch.inference_mode():
            bake(model, clip, vae, dataset, NetworkSpec(rank=4, alpha=4.0, targets="attn_mlp"),
                 OptimizerSpec(lr=1e-3, scheduler="constant"), TrainConfig(max_steps=9, seed=0, probe_samples=0),
                 SaveSpec(output_name="sdxl_sizes", save_dtype="fp32", save_state=False))
    finally:
        del base.extra_conds
    assert len(seen) == 9, len(seen)     # every training step brought its images' sizes
    buckets = {e.bucket for e in dataset.images}
    originals, crops = set(), set()
    for kwargs, y in seen:
        original = (kwargs["width"], kwargs["height"])
        target = (kwargs["target_width"], kwargs["target_height"])
        crop = (kwargs["crop_w"], kwargs["crop_h"])
        assert original in SIZES, original
        entry = next(e for e in dataset.images if tuple(e.size) == original)
        assert target == tuple(entry.bucket) and target in buckets
        scaled = dataset.scaled_size(entry, entry.bucket)
        assert 0 <= crop[0] <= scaled[0] - target[0] and 0 <= crop[1] <= scaled[1] - target[1], (crop, scaled)
        originals.add(original)
        crops.add(crop)
        # The adm vector: pooled text, then the host's 256-wide embeddings of h, w, crop_h, crop_w, target h, w.
        embed = [base.embedder(torch.Tensor([v])).reshape(-1) for v in
                 (original[1], original[0], crop[1], crop[0], target[1], target[0])]
        torch.testing.assert_close(y.reshape(-1)[-6 * 256:].cpu(), torch.cat(embed).to(y.dtype))
    assert originals == set(SIZES), originals          # every image brought its own size
    assert any(c != (0, 0) for c in crops), crops        # and crops other than the corner
