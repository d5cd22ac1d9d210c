"""Edit pairs through load_dataset (core/data/controls.py wired): the controls setting, every missing control named
before any image decodes, controls cut like their target, their latents cached under their own keys, and control
pictures from a graph IMAGE."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from core.data import DatasetConfig, DatasetError, load_dataset
from core.data.cache import LatentCache
from core.data.controls import control_base, with_control_images


def _img(path, size=(64, 64), colour=(200, 30, 30)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path)
    return path


def _pairs(root, stems=("a", "b"), controls=("control",), size=(64, 64)):
    for i, s in enumerate(stems):
        _img(root / "5_edit" / f"{s}.png", size, (10 * i, 200, 30))
        (root / "5_edit" / f"{s}.txt").write_text(f"make it red {s}")
        for n, c in enumerate(controls):
            _img(root / "5_edit" / c / f"{s}.jpg", size, (250, 20 * n, 40 * i))
    return root


def _cfg(root, **kw):
    return DatasetConfig(path=str(root), resolution=64, min_bucket_reso=64, max_bucket_reso=64, bucket_reso_steps=64,
                         **kw)


def test_controls_setting():
    assert control_base("none") is None and control_base("") is None
    assert control_base("auto") == "control" and control_base("before") == "before"
    with pytest.raises(DatasetError, match="plain folder name"):
        load_dataset(_cfg("/nowhere", controls="../x"))


def test_pairs_loaded_with_their_captions(tmp_path):
    ds = load_dataset(_cfg(_pairs(tmp_path), controls="auto"), warn=lambda m: pytest.fail(m))
    assert ds.controls_per_image == 1
    assert [e.controls[0].path.name for e in ds.images] == ["a.jpg", "b.jpg"]
    assert [e.caption for e in ds.images] == ["make it red a", "make it red b"]
    # controls "none": the same folder is a plain dataset (the control folder is only skipped, as before)
    assert load_dataset(_cfg(tmp_path), warn=lambda m: None).controls_per_image == 0


def test_missing_controls_named_before_decoding(tmp_path, monkeypatch):
    _pairs(tmp_path, stems=("a", "b", "c"), controls=("control_1", "control_2"))
    (tmp_path / "5_edit" / "control_2" / "b.jpg").unlink()
    (tmp_path / "5_edit" / "control_1" / "c.jpg").unlink()
    import core.data.load as load
    monkeypatch.setattr(load, "prepare_or_reason", lambda *a: pytest.fail("decoded before the pairs were checked"))
    with pytest.raises(DatasetError) as e:
        load_dataset(_cfg(tmp_path, controls="auto"))
    assert "b.png (no control_2/b.*)" in str(e.value) and "c.png (no control_1/c.*)" in str(e.value)


def test_three_controls_and_cut_like_target(tmp_path):
    # 128x64 targets into a 64x64 bucket: scaled to 128x64, centre crop at x=32; the controls get the same cut.
    root = tmp_path
    _img(root / "5_edit" / "a.png", (128, 64))
    for n in (1, 2, 3):
        im = Image.new("RGB", (128, 64), (255, 0, 0))
        im.paste((0, 0, 255), (64, 0, 128, 64))
        _img(root / "5_edit" / f"control_{n}" / "a.png").unlink()
        im.save(root / "5_edit" / f"control_{n}" / "a.png")
    ds = load_dataset(_cfg(root, controls="auto", enable_buckets=False), warn=lambda m: None)
    assert ds.controls_per_image == 3
    (ref,) = ds.epoch_plan(0, 1, 0)[0]
    assert ref.crop == (32, 0)
    px = ds.load_control(ref, 2).numpy()
    assert px.shape == (64, 64, 3)
    assert np.allclose(px[:, :28], [1, 0, 0], atol=0.03) and np.allclose(px[:, -28:], [0, 0, 1], atol=0.03)


def test_folders_must_agree_on_controls(tmp_path):
    _pairs(tmp_path / "r")
    _img(tmp_path / "r" / "3_other" / "z.png")
    with pytest.raises(DatasetError, match="3_other"):
        load_dataset(_cfg(tmp_path / "r", controls="auto"))


def test_control_latents_cached_under_their_own_keys(tmp_path):
    ds = load_dataset(_cfg(_pairs(tmp_path), controls="auto"), warn=lambda m: None)
    seen = []

    def encode(px):
        seen.append(px.shape[0])
        return px.permute(0, 3, 1, 2)[:, :, ::8, ::8].contiguous()
    cache = LatentCache(encode, "fake", str(tmp_path / "cache"))
    refs = ds.epoch_plan(0, 2, 0)[0]
    target = cache.get(ds, refs)
    (controls,) = cache.get_controls(ds, refs)
    assert controls.shape == target.shape and not torch.equal(controls, target)
    # the control's red (250) against the target's green (200) channel
    assert float(controls[:, 0].mean()) > 0.9 and float(target[:, 1].mean()) > 0.7
    keys = {cache.key(ds, r) for r in refs} | {cache.control_key(ds, r, 0) for r in refs}
    assert len(keys) == 4 and len(list((tmp_path / "cache").iterdir())) == 4
    flipped = type(refs[0])(refs[0].index, refs[0].bucket, refs[0].crop, True, False)
    assert cache.control_key(ds, flipped, 0) != cache.control_key(ds, refs[0], 0)
    cache.get_controls(ds, refs)
    assert seen == [2, 2]   # the second call read them from memory


def test_control_images_from_the_graph(tmp_path):
    ds = load_dataset(_cfg(_pairs(tmp_path, controls=())), warn=lambda m: None)
    pics = torch.zeros(4, 32, 32, 3)
    pics[:, :, :, 2] = 1.0
    paired = with_control_images(ds, pics)
    assert paired.controls_per_image == 2
    assert [c.source for c in paired.images[1].controls] == ["control_images[2]", "control_images[3]"]
    (ref,) = [r for r in paired.epoch_plan(0, 1, 0)[0]]
    assert np.allclose(paired.load_control(ref, 1).numpy(), [0, 0, 1], atol=0.01)
    with pytest.raises(DatasetError, match="3 image"):
        with_control_images(ds, pics[:3])
