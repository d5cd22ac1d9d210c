"""Bucket table and assignment against values worked out by hand (kohya's BucketManager rules)."""
import pytest

from kiln.core.data.buckets import assign_bucket, cover_size, make_buckets, scaled_size

# resolution 512 (area 262144), sides 256..1024, step 64. For each width w: h = min(1024, 262144 // w // 64 * 64)
# 256 -> 1024, 320 -> 768 (819.2), 384 -> 640 (682.7), 448 -> 576 (585.1), 512 -> 512, 576 -> 448, 640 -> 384,
# 704 -> 320 (372.4), 768 -> 320, 832 -> 256 (315.1), 896 -> 256, 960 -> 256, 1024 -> 256; plus each swap.
HAND_TABLE_512 = sorted({
    (256, 1024), (1024, 256), (320, 768), (768, 320), (384, 640), (640, 384), (448, 576), (576, 448), (512, 512),
    (704, 320), (320, 704), (832, 256), (256, 832), (896, 256), (256, 896), (960, 256), (256, 960)})


def test_bucket_table_512():
    assert make_buckets(512, 256, 1024, 64) == HAND_TABLE_512


def test_bucket_table_1024_sdxl_subset():
    buckets = make_buckets(1024, 512, 2048, 64)
    # 1024*1024 = 1048576: w=832 -> 1260.3 -> 1216; w=1216 -> 862.3 -> 832; w=1536 -> 682.7 -> 640
    for b in [(1024, 1024), (832, 1216), (1216, 832), (1536, 640), (640, 1536)]:
        assert b in buckets
    assert (1088, 1024) not in buckets and all(w * h <= 1024 * 1024 for w, h in buckets)


@pytest.mark.parametrize("size, expected", [
    ((1000, 1000), (512, 512)),   # ar 1
    ((1920, 1080), (640, 384)),   # ar 1.778: 640/384=1.667 (err .111) beats 704/320=2.2 (.422)
    ((1080, 1920), (384, 640)),
    ((1200, 1800), (384, 640)),   # ar .667: 384/640=.6 (.067) beats 448/576=.778 (.111)
    ((4000, 3000), (576, 448)),   # ar 1.333: 576/448=1.286 (.048)
    ((2000, 1000), (704, 320)),   # ar 2: 2.2 (.2) beats 1.667 (.333)
    ((3000, 1000), (832, 256)),   # ar 3: 3.25 (.25) beats 2.4 (.6)
    ((2810, 1000), (768, 320)),   # ar 2.81: kohya's plain difference picks 2.4 (.41 < .44); a log ratio would pick 3.25
    ((5000, 500), (1024, 256)),   # ar 10: the widest bucket
    ((64, 64), (512, 512)),       # tiny images are upscaled into their bucket without no-upscale
])
def test_bucket_assignment(size, expected):
    assert assign_bucket(size, HAND_TABLE_512) == expected


def test_cover_size_and_scaled_size():
    assert cover_size((1920, 1080), (640, 384)) == (683, 384)    # 1920 * 384/1080 = 682.67 -> 683
    assert cover_size((1000, 1000), (512, 512)) == (512, 512)
    assert cover_size((1200, 1800), (384, 640)) == (427, 640)    # 1200 * 640/1800 = 426.67
    assert scaled_size((1920, 1080), (640, 384)) == (683, 384)


def test_no_upscale_small_images_keep_their_size_and_are_only_cropped():
    # 300x200 is within 512*512: bucket = size rounded down to 64, no scaling at all
    assert assign_bucket((300, 200), [], no_upscale=True, resolution=512, step=64) == (256, 192)
    assert scaled_size((300, 200), (256, 192), no_upscale=True, resolution=512, step=64) == (300, 200)
    # a sliver narrower than one step still gets a one-step side (scaled up to it, the only upscale)
    assert assign_bucket((50, 300), [], no_upscale=True, resolution=512, step=64) == (64, 256)
    assert scaled_size((50, 300), (64, 256), no_upscale=True, resolution=512, step=64) == (64, 384)


def test_no_upscale_large_images_are_scaled_to_the_area_first():
    # 1000x800 (ar 1.25) > 512*512: width 572.4 -> 512, height 409.6 -> 384 (kohya's rounding by area)
    assert assign_bucket((1000, 800), [], no_upscale=True, resolution=512, step=64) == (512, 384)
    assert scaled_size((1000, 800), (512, 384), no_upscale=True, resolution=512, step=64) == (512, 410)


def test_bad_bucket_settings_raise():
    with pytest.raises(ValueError):
        make_buckets(512, 1024, 256, 64)
    with pytest.raises(ValueError):
        make_buckets(512, 256, 1024, 0)
