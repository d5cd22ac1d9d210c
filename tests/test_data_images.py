"""Odd images, each made here with PIL: converted the right way, or skipped with ONE warning listing them."""
import numpy as np
import pytest
import torch
from PIL import Image

from kiln.core.data import DatasetConfig, DatasetError, load_dataset

SMALL = dict(resolution=64, min_bucket_reso=32, max_bucket_reso=128, bucket_reso_steps=32)


def halves(size=(96, 64), left=(255, 0, 0), right=(0, 0, 255)):
    """Left half one colour, right half another: shows where a rotation or flip went."""
    w, h = size
    arr = np.zeros((h, w, 3), np.uint8)
    arr[:, : w // 2] = left
    arr[:, w // 2:] = right
    return Image.fromarray(arr)


def load_one(folder, warn=None, **kw):
    ds = load_dataset(DatasetConfig(path=str(folder), **{**SMALL, **kw}), warn=(warn.append if warn is not None else print))
    ref = ds.epoch_plan(0, 1, 0)[0][0]
    return ds, ds.images[ref.index], ds.load_pixels(ref)


def test_exif_orientation_jpeg_rotate_90(tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6   # stored sideways: shown rotated 90 degrees clockwise, so the left half ends on top
    halves().save(tmp_path / "r.jpg", exif=exif, quality=95)
    _, entry, px = load_one(tmp_path)
    assert entry.size == (64, 96) and entry.bucket == (32, 96)   # upright and tall: 32x96 bucket (ar .33 ties 1.0; first wins)
    assert px[2, 16, 0] > 0.8 and px[2, 16, 2] < 0.2       # top: red
    assert px[-3, 16, 2] > 0.8 and px[-3, 16, 0] < 0.2     # bottom: blue


def test_exif_orientation_png_rotate_270(tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 8   # rotated 90 counter-clockwise: the left half ends at the bottom
    halves().save(tmp_path / "r.png", exif=exif)
    _, entry, px = load_one(tmp_path)
    assert entry.size == (64, 96)
    assert torch.allclose(px[-1, 16], torch.tensor([1.0, 0.0, 0.0])) and torch.allclose(px[0, 16], torch.tensor([0.0, 0.0, 1.0]))


def test_rgba_composited_on_the_background(tmp_path):
    arr = np.zeros((64, 64, 4), np.uint8)
    arr[..., 0] = 255
    arr[:, 32:, 3] = 255                                   # left transparent, right opaque red
    arr[:2, :2, 3] = 128                                   # a half-transparent corner
    Image.fromarray(arr, "RGBA").save(tmp_path / "a.png")
    _, _, px = load_one(tmp_path, background=(0, 255, 0))
    assert torch.allclose(px[10, 10], torch.tensor([0.0, 1.0, 0.0]))     # background
    assert torch.allclose(px[10, 50], torch.tensor([1.0, 0.0, 0.0]))
    assert torch.allclose(px[0, 0], torch.tensor([128 / 255, 127 / 255, 0.0]), atol=2 / 255)   # blended


def test_la_and_palette_transparency_composited(tmp_path):
    la = Image.new("LA", (64, 64), (0, 0))
    la.save(tmp_path / "1_x" / "la.png") if (tmp_path / "1_x").mkdir() is None else None
    p = Image.new("P", (64, 64), 1)
    p.putpalette([0, 0, 0, 10, 20, 30] + [0] * 762)
    p.save(tmp_path / "1_x" / "p.png", transparency=1)
    ds = load_dataset(DatasetConfig(path=str(tmp_path), background=(0, 0, 255), **SMALL))
    for ref in (b[0] for b in ds.epoch_plan(0, 1, 0)):
        assert torch.allclose(ds.load_pixels(ref)[5, 5], torch.tensor([0.0, 0.0, 1.0])), ds.images[ref.index].path


def test_cmyk_jpeg_converted(tmp_path):
    Image.new("CMYK", (64, 64), (0, 255, 255, 0)).save(tmp_path / "c.jpg", quality=95)   # pure red ink mix
    _, _, px = load_one(tmp_path)
    assert px.shape == (64, 64, 3) and px[..., 0].mean() > 0.9 and px[..., 1:].mean() < 0.1


def test_sixteen_bit_greyscale_scaled_not_clipped(tmp_path):
    Image.fromarray(np.full((64, 64), 40000, dtype=np.uint16)).save(tmp_path / "s.png")
    _, _, px = load_one(tmp_path)
    assert torch.allclose(px, torch.full_like(px, round(40000 / 65535 * 255) / 255))   # 156/255, every channel


def test_greyscale_and_bitonal_become_rgb(tmp_path):
    (tmp_path / "1_x").mkdir()
    Image.new("L", (64, 64), 90).save(tmp_path / "1_x" / "g.webp", lossless=True)
    Image.new("1", (64, 64), 1).save(tmp_path / "1_x" / "b.bmp")
    ds = load_dataset(DatasetConfig(path=str(tmp_path), **SMALL))
    got = {ds.images[b[0].index].path.name: ds.load_pixels(b[0]) for b in ds.epoch_plan(0, 1, 0)}
    assert torch.allclose(got["g.webp"], torch.full((64, 64, 3), 90 / 255))
    assert torch.allclose(got["b.bmp"], torch.ones(64, 64, 3))


def test_all_formats_and_unicode_names(tmp_path):
    d = tmp_path / "3_ñandú 名前"
    d.mkdir()
    for name in ("ünï 1.png", "写真.jpg", "é.jpeg", "ß.webp", "ø.bmp"):
        halves((64, 64)).save(d / name)
    (d / "写真.txt").write_text("日本語, タグ", encoding="utf-8")
    ds = load_dataset(DatasetConfig(path=str(tmp_path), **SMALL))
    caps = {e.path.name: e.caption for e in ds.images}
    assert set(caps) == {"ünï 1.png", "写真.jpg", "é.jpeg", "ß.webp", "ø.bmp"}
    assert caps["写真.jpg"] == "日本語, タグ" and caps["ø.bmp"] == "ñandú 名前"
    assert ds.tag_frequency()["3_ñandú 名前"]["タグ"] == 1


def test_broken_files_skipped_with_one_warning_listing_them(tmp_path):
    d = tmp_path / "1_x"
    d.mkdir()
    halves((64, 64)).save(d / "good.png")
    (d / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    (d / "empty.jpg").write_bytes(b"")
    (d / "text.webp").write_text("not an image")
    halves((64, 64)).save(d / "truncated.jpg", quality=95)
    (d / "truncated.jpg").write_bytes((d / "truncated.jpg").read_bytes()[:300])
    halves((64, 64)).save(d / "cut.png")
    (d / "cut.png").write_bytes((d / "cut.png").read_bytes()[:-40])
    warnings = []
    ds = load_dataset(DatasetConfig(path=str(tmp_path), **SMALL), warn=warnings.append)
    assert [e.path.name for e in ds.images] == ["good.png"]
    skipped = [w for w in warnings if "skipped" in w]
    assert len(skipped) == 1 and "5 unreadable" in skipped[0]
    for name in ("corrupt.png", "empty.jpg", "text.webp", "truncated.jpg", "cut.png"):
        assert f"1_x/{name}" in skipped[0]


def test_decompression_bomb_skipped_before_decoding(tmp_path, monkeypatch):
    import kiln.core.data.images as images
    halves((64, 64)).save(tmp_path / "ok.png")
    Image.new("RGB", (300, 300)).save(tmp_path / "huge.png")
    monkeypatch.setattr(images, "MAX_PIXELS", 200 * 200)
    warnings = []
    ds = load_dataset(DatasetConfig(path=str(tmp_path), **SMALL), warn=warnings.append)
    assert [e.path.name for e in ds.images] == ["ok.png"]
    assert len(warnings) == 1 and "huge.png" in warnings[0] and "decompression bomb" in warnings[0]


def test_real_pil_bomb_limit_is_caught(tmp_path, monkeypatch):
    # PIL's own guard (2 x MAX_IMAGE_PIXELS raises while opening) is reported the same way
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    Image.new("RGB", (64, 64)).save(tmp_path / "big.png")
    with pytest.raises(DatasetError, match="unreadable"):
        load_dataset(DatasetConfig(path=str(tmp_path), **SMALL), warn=lambda m: None)


def test_flip_and_crop_follow_the_ref(tmp_path):
    halves((192, 64)).save(tmp_path / "w.png")    # ar 3 -> 96x32 bucket, scaled to exactly 96x32
    ds = load_dataset(DatasetConfig(path=str(tmp_path), flip_aug=True, **SMALL))
    refs = [r for e in range(16) for b in ds.epoch_plan(e, 1, 0) for r in b]
    flipped = next(r for r in refs if r.flip)
    plain = next(r for r in refs if not r.flip)
    a, b = ds.load_pixels(plain), ds.load_pixels(flipped)
    assert a.shape == (32, 96, 3) and torch.equal(a.flip(1), b)
    assert a[16, 0, 0] == 1.0 and b[16, 0, 2] == 1.0


def test_random_crop_varies_centre_crop_does_not(tmp_path):
    halves((64, 256)).save(tmp_path / "t.png")    # ar .25 -> 32x128 bucket, scaled to 32x128... use tall 64x64 bucket
    ds = load_dataset(DatasetConfig(path=str(tmp_path), enable_buckets=False, random_crop=True, **SMALL))
    crops = {b[0].crop for e in range(10) for b in ds.epoch_plan(e, 1, 0)}
    assert len(crops) > 1 and all(c[0] == 0 and 0 <= c[1] <= 192 for c in crops)
    centre = load_dataset(DatasetConfig(path=str(tmp_path), enable_buckets=False, **SMALL))
    assert {b[0].crop for e in range(5) for b in centre.epoch_plan(e, 1, 0)} == {(0, 96)}


def test_color_aug_changes_pixels_deterministically(tmp_path):
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(tmp_path / "n.png")
    ds = load_dataset(DatasetConfig(path=str(tmp_path), color_aug=True, **SMALL))
    r0, r1 = (ds.epoch_plan(e, 1, 0)[0][0] for e in range(2))
    plain = load_dataset(DatasetConfig(path=str(tmp_path), **SMALL))
    base = plain.load_pixels(plain.epoch_plan(0, 1, 0)[0][0])
    assert torch.equal(ds.load_pixels(r0), ds.load_pixels(r0))
    assert not torch.allclose(ds.load_pixels(r0), base, atol=1e-3)
    assert not torch.allclose(ds.load_pixels(r0), ds.load_pixels(r1), atol=1e-3)
    assert float((ds.load_pixels(r0) - base).abs().mean()) < 0.15   # small changes
