"""Datasets without the host: folders, captions, buckets, odd images, step arithmetic and the latent cache."""
import json

import numpy as np
import pytest
import torch
from PIL import Image

from kiln.core.data import DatasetConfig, DatasetError, load_dataset
from kiln.core.data.buckets import assign_bucket, cover_size, make_buckets
from kiln.core.data.cache import LatentCache
from kiln.core.data.captions import process_caption


def img(path, size=(64, 64), mode="RGB", color=(200, 30, 30)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, color if mode in ("RGB", "RGBA") else 128).save(path)
    return path


def test_bucket_table_matches_hand_computed_values():
    buckets = make_buckets(512, 256, 1024, 64)
    # kohya: for each width on the grid, the tallest height that keeps the area; plus the swap
    assert (512, 512) in buckets and (768, 320) in buckets and (320, 768) in buckets and (576, 448) in buckets
    assert all(w * h <= 512 * 512 and w % 64 == 0 and h % 64 == 0 for w, h in buckets)
    table = {(1000, 1000): (512, 512), (1920, 1080): (640, 384), (1080, 1920): (384, 640),
             (600, 400): (640, 384), (3000, 1000): (832, 256)}
    for size, expected in table.items():
        assert assign_bucket(size, buckets) == expected, size
    # no-upscale keeps a small image's own size (rounded down to the step)
    assert assign_bucket((300, 200), buckets, no_upscale=True, resolution=512, step=64) == (256, 192)
    assert cover_size((1920, 1080), (640, 384)) == (683, 384)


def test_flat_folder_and_caption_extension_mixups(tmp_path):
    img(tmp_path / "x.png")
    (tmp_path / "x.caption").write_text("from caption file")
    warnings = []
    ds = load_dataset(DatasetConfig(path=str(tmp_path), repeats=3, resolution=64, min_bucket_reso=64), warn=warnings.append)
    assert ds.samples_per_epoch() == 3
    assert any("'.caption' files are there" in w for w in warnings)
    ds2 = load_dataset(DatasetConfig(path=str(tmp_path), caption_extension=".caption", resolution=64, min_bucket_reso=64))
    assert ds2.images[0].caption == "from caption file"


def test_empty_or_missing_dataset_is_a_clear_error(tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        load_dataset(DatasetConfig(path=str(tmp_path / "nope")))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="N_name"):
        load_dataset(DatasetConfig(path=str(tmp_path / "empty")))


def test_odd_images_are_converted_or_skipped_with_one_warning(tmp_path):
    d = tmp_path / "1_odd"
    img(d / "rgba.png", mode="RGBA", color=(255, 0, 0, 0))
    Image.new("CMYK", (64, 64), (0, 255, 255, 0)).save(d / "cmyk.jpg")
    Image.fromarray(np.full((64, 64), 40000, dtype=np.uint16)).save(d / "sixteen.png")
    Image.new("L", (64, 64), 90).save(d / "grey.webp")
    Image.new("P", (64, 64), 3).save(d / "palette.bmp")
    img(d / "ünïcødé 名前.png")
    # EXIF-rotated: stored 96x64 with orientation 6 (rotate 90) -> 64x96 upright
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.new("RGB", (96, 64), (0, 0, 255)).save(d / "rotated.jpg", exif=exif)
    (d / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    good = img(d / "truncated.jpg", (64, 64))
    good.write_bytes(good.read_bytes()[:200])
    warnings = []
    ds = load_dataset(DatasetConfig(path=str(tmp_path), resolution=64, min_bucket_reso=64, max_bucket_reso=128,
                                    bucket_reso_steps=32, background=(0, 255, 0)), warn=warnings.append)
    names = {e.path.name: e for e in ds.images}
    assert "corrupt.png" not in names and "truncated.jpg" not in names
    skipped = [w for w in warnings if "skipped" in w]
    assert len(skipped) == 1 and "corrupt.png" in skipped[0] and "truncated.jpg" in skipped[0]
    assert names["rotated.jpg"].size == (64, 96)
    refs = {ds.images[r.index].path.name: r for b in ds.epoch_plan(0, 1, 0) for r in b}
    rgba = ds.load_pixels(refs["rgba.png"])
    assert rgba.shape == (64, 64, 3) and torch.allclose(rgba[0, 0], torch.tensor([0.0, 1.0, 0.0]))  # background
    assert ds.load_pixels(refs["cmyk.jpg"]).shape == (64, 64, 3)
    assert 0.55 < float(ds.load_pixels(refs["sixteen.png"]).mean()) < 0.65   # 40000/65535
    assert ds.load_pixels(refs["grey.webp"]).shape[-1] == 3
    assert ds.load_mask(refs["rgba.png"]) is not None and float(ds.load_mask(refs["rgba.png"]).max()) == 0.0


def test_decompression_bomb_is_skipped(tmp_path, monkeypatch):
    import kiln.core.data.images as images
    img(tmp_path / "1_x" / "ok.png")
    img(tmp_path / "1_x" / "huge.png", (300, 300))
    monkeypatch.setattr(images, "MAX_PIXELS", 200 * 200)
    warnings = []
    ds = load_dataset(DatasetConfig(path=str(tmp_path), resolution=64, min_bucket_reso=64), warn=warnings.append)
    assert [e.path.name for e in ds.images] == ["ok.png"]
    assert "huge.png" in warnings[-1] and "decompression bomb" in warnings[-1]


def test_caption_processing_keep_tokens_shuffle_dropout():
    import random
    cfg = DatasetConfig(path="", shuffle_caption=True, keep_tokens=1, caption_prefix="zyx")
    outs = {process_caption("alice, a, b, c, d", cfg, random.Random(s)) for s in range(20)}
    assert len(outs) > 1 and all(o.startswith("zyx, alice, ") for o in outs)
    sep = DatasetConfig(path="", shuffle_caption=True, keep_tokens_separator="|||")
    assert all(process_caption("t1, t2 ||| x, y, z", sep, random.Random(s)).startswith("t1, t2, ") for s in range(10))
    drop = DatasetConfig(path="", caption_dropout_rate=1.0)
    assert process_caption("a, b", drop, random.Random(0)) == ""
    tags = DatasetConfig(path="", tag_dropout_rate=1.0, keep_tokens=1)
    assert process_caption("keep, gone, gone2", tags, random.Random(0)) == "keep"


def test_map_captions_returns_a_new_dataset(tmp_path):
    img(tmp_path / "1_x" / "a.png")
    (tmp_path / "1_x" / "a.txt").write_text("red_dress, smile")
    ds = load_dataset(DatasetConfig(path=str(tmp_path), resolution=64, min_bucket_reso=64))
    ds2 = ds.map_captions(lambda c: c.replace("red_dress", "zyxdress"))
    assert ds.images[0].caption == "red_dress, smile" and ds2.images[0].caption == "zyxdress, smile"


def _settings_dataset(tmp_path, **kw):
    return load_dataset(DatasetConfig(path=str(tmp_path), resolution=64, min_bucket_reso=64, max_bucket_reso=128,
                                      bucket_reso_steps=32, **kw))


def test_latent_cache_reuses_and_invalidates(tmp_path):
    img(tmp_path / "1_x" / "a.png", (96, 64))
    calls = []

    def encode(pixels):
        calls.append(pixels.shape[0])
        return pixels.permute(0, 3, 1, 2)[:, :1, ::8, ::8] * 2

    cache = LatentCache(encode, "enc-1", disk_dir=str(tmp_path / "cache"))
    ds = _settings_dataset(tmp_path)
    ref = ds.epoch_plan(0, 1, 0)[0]
    a = cache.get(ds, ref)
    b = cache.get(ds, ref)
    assert torch.equal(a, b) and calls == [1] and cache.hits == 1
    # a fresh cache finds it on disk
    disk = LatentCache(encode, "enc-1", disk_dir=str(tmp_path / "cache"))
    disk.get(ds, ref)
    assert calls == [1]
    # every latent-affecting change misses: another encoder, bucket settings, flip, background, content
    LatentCache(encode, "enc-2", str(tmp_path / "cache")).get(ds, ref)
    assert len(calls) == 2
    other = _settings_dataset(tmp_path, flip_aug=True)
    flipped = [r for b in (other.epoch_plan(e, 1, 0) for e in range(8)) for r in b[0] if r.flip]
    cache.get(other, [flipped[0]])
    assert len(calls) == 3
    cache.get(_settings_dataset(tmp_path, background=(0, 0, 0)), ref)
    assert len(calls) == 4
    bigger = load_dataset(DatasetConfig(path=str(tmp_path), resolution=128, min_bucket_reso=64, max_bucket_reso=256,
                                        bucket_reso_steps=32))
    cache.get(bigger, bigger.epoch_plan(0, 1, 0)[0])
    assert len(calls) == 5
    img(tmp_path / "1_x" / "a.png", (96, 64), color=(1, 2, 3))
    cache.get(_settings_dataset(tmp_path), ref)
    assert len(calls) == 6


def test_regularization_images_are_balanced_and_weighted(tmp_path):
    for i in range(2):
        img(tmp_path / "train" / "3_alice" / f"a{i}.png")
    for i in range(5):
        img(tmp_path / "reg" / "1_woman" / f"r{i}.png")
    ds = load_dataset(DatasetConfig(path=str(tmp_path / "train"), reg_path=str(tmp_path / "reg"), resolution=64,
                                    min_bucket_reso=64, prior_loss_weight=0.5))
    # kohya: as many reg samples as training samples per epoch (2 images x 3 repeats = 6 of each)
    assert ds.samples_per_epoch() == 12 and ds.steps_per_epoch(2) == 6
    refs = [r for b in ds.epoch_plan(0, 1, 0) for r in b]
    assert sum(r.is_reg for r in refs) == 6 and sum(not r.is_reg for r in refs) == 6
    assert json.loads(ds.training_metadata()["ss_num_reg_images"]) == 5
    train, val = ds.split_validation(0.5, seed=0)
    assert val is not None and len(val) == 1 and len(train) == len(ds) - 1
