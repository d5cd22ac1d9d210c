"""The latent cache: reused while nothing that changes the encoder's input changes, invalidated by each
thing that does. The encoder is a fake deterministic function (core, no host)."""
import pytest
import torch
from PIL import Image

from kiln.core.data import DatasetConfig, load_dataset
from kiln.core.data.cache import LatentCache

BASE = dict(resolution=64, min_bucket_reso=32, max_bucket_reso=128, bucket_reso_steps=32)


class FakeEncoder:
    """Pixels -> a 4-channel 'latent' at 1/8 size, deterministic; records each call's batch size."""

    def __init__(self):
        self.calls = []

    def __call__(self, pixels):
        self.calls.append(pixels.shape[0])
        x = pixels.permute(0, 3, 1, 2)
        lat = torch.nn.functional.avg_pool2d(x, 8)
        return torch.cat([lat, lat.mean(1, keepdim=True)], 1)

    @property
    def encoded(self):
        return sum(self.calls)


@pytest.fixture
def folder(tmp_path):
    d = tmp_path / "data" / "2_x"
    d.mkdir(parents=True)
    for i, size in enumerate([(96, 64), (200, 90), (256, 64)]):   # buckets 64x64, 96x32, 128x32
        Image.effect_mandelbrot(size, (-2, -1.2, 0.8, 1.2), 20 + i).convert("RGB").save(d / f"{i}.png")
    return tmp_path / "data"


def ds_for(folder, **kw):
    return load_dataset(DatasetConfig(path=str(folder), **{**BASE, **kw}), warn=lambda m: None)


def first_refs(ds):
    """One ref per image from epoch 0 (batch 1), in image order."""
    refs = {}
    for b in ds.epoch_plan(0, 1, 0):
        refs.setdefault(b[0].index, b[0])
    return [refs[i] for i in sorted(refs)]


def get_each(cache, ds):
    """Each image's epoch-0 latent, one call per image (a call is one batch, so one bucket)."""
    return [cache.get(ds, [r]) for r in first_refs(ds)]


def test_encodes_once_then_reuses_and_matches_direct_encoding(folder):
    enc = FakeEncoder()
    cache = LatentCache(enc, "vae-A")
    ds = ds_for(folder)
    refs = first_refs(ds)
    for ref in refs:
        lat = cache.get(ds, [ref])
        assert torch.equal(lat, enc(ds.load_pixels(ref)[None]))
        enc.calls.pop()
    n = enc.encoded
    for _ in range(3):
        for ref in refs:
            cache.get(ds, [ref])
    assert enc.encoded == n == len(refs) and cache.hits == 3 * len(refs) and cache.misses == len(refs)


def test_only_misses_are_encoded_in_one_batch(folder):
    enc = FakeEncoder()
    cache = LatentCache(enc, "vae-A")
    ds = ds_for(folder, enable_buckets=False)          # one bucket: every image batches together
    refs = first_refs(ds)
    cache.get(ds, refs[:1])
    out = cache.get(ds, refs + refs[:1])
    assert enc.calls == [1, 2] and out.shape[0] == 4 and torch.equal(out[0], out[3])


SETTINGS_THAT_CHANGE_LATENTS = [
    dict(resolution=96),
    dict(min_bucket_reso=64),            # the wide images move to another bucket
    dict(max_bucket_reso=96),
    dict(bucket_reso_steps=16),
    dict(bucket_no_upscale=True),
    dict(enable_buckets=False),
    dict(background=(0, 0, 0)),          # (does not show on opaque images: checked separately below)
]


@pytest.mark.parametrize("change", SETTINGS_THAT_CHANGE_LATENTS[:-1])
def test_each_bucket_setting_invalidates_exactly_the_changed_images(folder, change):
    enc = FakeEncoder()
    cache = LatentCache(enc, "vae-A")
    base = ds_for(folder)
    get_each(cache, base)
    before = enc.encoded
    changed = ds_for(folder, **change)
    old = {r.index: base.load_pixels(r) for r in first_refs(base)}
    # judged by the pixels the encoder would see, not by the cache's own key
    differ = sum(1 for r in first_refs(changed)
                 if old[r.index].shape != changed.load_pixels(r).shape or not torch.equal(old[r.index], changed.load_pixels(r)))
    assert differ > 0, f"{change} changed no image's pixels: pick a setting/image that does"
    get_each(cache, changed)
    assert enc.encoded == before + differ     # every changed image re-encoded, every unchanged one reused


def test_background_crop_flip_content_and_encoder_invalidate(folder, tmp_path):
    enc = FakeEncoder()
    cache = LatentCache(enc, "vae-A")
    rgba = tmp_path / "rgba" / "1_y"
    rgba.mkdir(parents=True)
    Image.new("RGBA", (64, 64), (255, 0, 0, 0)).save(rgba / "t.png")
    white, black = ds_for(rgba.parent), ds_for(rgba.parent, background=(0, 0, 0))
    get_each(cache, white)
    get_each(cache, black)
    assert enc.calls == [1, 1]
    # flip
    flip = ds_for(folder, flip_aug=True)
    refs = [b[0] for e in range(12) for b in flip.epoch_plan(e, 1, 0) if b[0].index == 0]
    one, other = next(r for r in refs if r.flip), next(r for r in refs if not r.flip)
    cache.get(flip, [one]); cache.get(flip, [other]); cache.get(flip, [one])
    assert enc.calls[2:] == [1, 1]
    # random crop: another crop offset is another latent; the same offset is reused
    rc = ds_for(folder, random_crop=True, enable_buckets=False)
    refs = [b[0] for e in range(12) for b in rc.epoch_plan(e, 1, 0) if b[0].index == 1]
    crops = {r.crop for r in refs}
    n = enc.encoded
    for r in refs:
        cache.get(rc, [r])
    assert len(crops) > 1 and enc.encoded == n + len(crops)
    # content: the same file name with new pixels
    base = ds_for(folder)
    get_each(cache, base)
    n = enc.encoded
    Image.new("RGB", (96, 64), (9, 9, 9)).save(folder / "2_x" / "0.png")
    edited = ds_for(folder)
    get_each(cache, edited)
    assert enc.encoded == n + 1
    # another encoder
    cache2 = LatentCache(enc, "vae-B")
    cache2.memory = cache.memory      # even sharing storage, the key differs
    cache2.get(edited, first_refs(edited)[:1])
    assert enc.encoded == n + 2


def test_caption_and_other_non_pixel_settings_reuse(folder):
    enc = FakeEncoder()
    cache = LatentCache(enc, "vae-A")
    base = ds_for(folder)
    get_each(cache, base)
    n = enc.encoded
    for change in [dict(shuffle_caption=True, keep_tokens=1), dict(caption_prefix="zyx"), dict(repeats=5),
                   dict(caption_source="none"), dict(prior_loss_weight=0.3), dict(tag_dropout_rate=0.2)]:
        get_each(cache, ds_for(folder, **change))
    get_each(cache, base.map_captions(str.upper))
    assert enc.encoded == n


def test_color_aug_is_never_cached(folder):
    enc = FakeEncoder()
    cache = LatentCache(enc, "vae-A")
    ds = ds_for(folder, color_aug=True)
    refs = first_refs(ds)
    cache.get(ds, refs[:1]); cache.get(ds, refs[:1])
    assert enc.calls == [1, 1] and not cache.memory and cache.hits == 0


def test_disk_cache_survives_a_new_process_and_a_damaged_file(folder, tmp_path):
    enc = FakeEncoder()
    disk = tmp_path / "latents"
    ds = ds_for(folder)
    refs = first_refs(ds)
    first = LatentCache(enc, "vae-A", str(disk)).get(ds, refs[:1])
    files = list(disk.rglob("*.safetensors"))
    assert len(files) == 1 and not list(disk.rglob("*.tmp"))
    again = LatentCache(enc, "vae-A", str(disk))
    assert torch.equal(again.get(ds, refs[:1]), first) and enc.calls == [1] and again.hits == 1
    files[0].write_bytes(b"broken")
    third = LatentCache(enc, "vae-A", str(disk))
    assert torch.equal(third.get(ds, refs[:1]), first) and enc.calls == [1, 1]
