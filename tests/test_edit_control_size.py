"""control_resolution (core/data/controls.py): controls cut like their target ("target"), at ~N x N pixels (a number)
or at the edit family's own reference size ("family", resolved once the model is known); another size keeps the
target's crop box, scaled, and the latent and caption cache keys tell the sizes apart."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from core.data import DatasetConfig, DatasetError, load_dataset
from core.data.cache import LatentCache
from core.data.controls import (control_cut, control_identity, control_side, control_size,
                                family_control_resolution)


def _cfg(root, **kw):
    """One 64x64 bucket: a 2:1 image is scaled to 128x64 and cropped (randomly with random_crop)."""
    return DatasetConfig(path=str(root), resolution=64, min_bucket_reso=64, max_bucket_reso=64, bucket_reso_steps=64,
                         **kw)


def _pair(root, size=(128, 64)):
    """A target and its control of the same content: left half red, right half blue (the control a 4x larger copy)."""
    folder = root / "1_edit"
    (folder / "control").mkdir(parents=True)
    for path, scale in ((folder / "a.png", 1), (folder / "control" / "a.png", 4)):
        w, h = size[0] * scale, size[1] * scale
        im = Image.new("RGB", (w, h), (0, 0, 255))
        im.paste((255, 0, 0), (0, 0, w // 2, h))
        im.save(path)
    (folder / "a.txt").write_text("make it green")
    return root


def test_control_resolution_setting():
    assert control_side("target") is None and control_side("family") is None and control_side("") is None
    assert control_side("1024") == 1024 and control_side(" 512 ") == 512
    for bad in ("big", "10", "99999"):
        with pytest.raises(DatasetError, match="control_resolution"):
            control_side(bad)
    with pytest.raises(DatasetError, match="control_resolution"):
        load_dataset(_cfg("/nowhere", control_resolution="1 Mpx"))
    assert family_control_resolution("family", "qwen-image") == "1024"      # TextEncodeQwenImageEditPlus' ~1 Mpx
    assert family_control_resolution("family", "flux1-dev") == "1024"       # Kontext's ~1 Mpx sizes
    assert family_control_resolution("family", "flux2") == "target"
    assert family_control_resolution("512", "qwen-image") == "512"          # only "family" is resolved


def test_control_size_keeps_the_target_aspect_at_about_n_squared_pixels():
    assert control_size((64, 48), None) == (64, 48)
    w, h = control_size((832, 1216), 1024)
    assert w % 16 == 0 and h % 16 == 0 and abs(w * h - 1024 * 1024) / (1024 * 1024) < 0.03
    assert abs(w / h - 832 / 1216) < 0.02
    assert control_size((64, 64), 1024) == (1024, 1024)


def test_control_cut_is_the_target_crop_box_scaled():
    # target: scaled to 100x64, cropped at x=18 to 64x64; a 2x control: scaled to 200x128, cropped at x=36
    assert control_cut((100, 64), (18, 0), (64, 64), (64, 64)) == ((100, 64), (18, 0))
    assert control_cut((100, 64), (18, 0), (64, 64), (128, 128)) == ((200, 128), (36, 0))
    pre, crop = control_cut((101, 64), (37, 0), (64, 64), (96, 96))
    assert crop[0] + 96 <= pre[0] and crop[1] + 96 <= pre[1]


def test_controls_at_another_size_line_up_with_their_target(tmp_path):
    root = _pair(tmp_path)
    plain = load_dataset(_cfg(root, controls="auto", random_crop=True))
    sized = load_dataset(_cfg(root, controls="auto", random_crop=True, control_resolution="128"))
    refs = [r for epoch in range(6) for batch in plain.epoch_plan(epoch, 1, epoch) for r in batch]
    assert len({r.crop for r in refs}) > 1          # several crop boxes, not only the centre
    for ref in refs:
        target, control = plain.load_pixels(ref).numpy(), plain.load_control(ref, 0).numpy()
        big = sized.load_control(ref, 0).numpy()
        assert control.shape == target.shape
        bw, bh = control_size(ref.bucket, 128)
        assert big.shape == (bh, bw, 3) and big.shape[:2] != target.shape[:2]
        # the same crop box: the red/blue boundary at the same fraction of the width in target and control
        red_target = (target[..., 0] > 0.5).mean()
        assert abs((big[..., 0] > 0.5).mean() - red_target) < 0.05 and abs((control[..., 0] > 0.5).mean() -
                                                                          red_target) < 0.05


def test_cache_keys_tell_the_control_sizes_apart(tmp_path):
    root = _pair(tmp_path)
    plain = load_dataset(_cfg(root, controls="auto"))
    sized = load_dataset(_cfg(root, controls="auto", control_resolution="128"))
    ref = plain.epoch_plan(0, 1, 0)[0][0]
    cache = LatentCache(lambda px: px.movedim(-1, 1)[:, :, ::8, ::8], "test")
    assert cache.control_key(plain, ref, 0) != cache.control_key(sized, ref, 0)
    assert cache.key(plain, ref) == cache.key(sized, ref)        # the target's own latent is shared
    assert control_identity(plain, ref) != control_identity(sized, ref)
    a, b = cache.get_controls(plain, [ref])[0], cache.get_controls(sized, [ref])[0]
    assert a.shape[-2:] != b.shape[-2:] and np.isfinite(b.numpy()).all()
    assert sized.with_control_resolution("target").load_control(ref, 0).shape == plain.load_control(ref, 0).shape
