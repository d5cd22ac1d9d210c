"""Folders of numbered frames as clips in Load Dataset's scan: found beside images and video files (flat and in
N_name concepts), captioned by ``<folder>.txt``, cut into windows like a video file, decoded frame by frame, cache
key changing with the frames; a folder with a broken frame named once and skipped."""
import numpy as np
import pytest
from PIL import Image

from kiln.core.data import DatasetConfig, load_dataset
from kiln.core.data.clips import clip_digest, is_frame_folder

av = pytest.importorskip("av")


def _frames(folder, n, size=(64, 64), start=0):
    folder.mkdir(parents=True)
    for i in range(n):
        Image.new("RGB", size, (10 * (i + start), 0, 0)).save(folder / f"{i + 1:04d}.png")
    return folder


def _cfg(root, **kw):
    return DatasetConfig(path=str(root), resolution=64, min_bucket_reso=64, max_bucket_reso=64, **kw)


def test_frame_folders_mix_with_images_and_clips(tmp_path):
    from test_data_clips import write_clip
    root = tmp_path / "1_motion"
    _frames(root / "wave", 11)
    write_clip(root / "walk.mp4", frames=9, size=(64, 64))
    Image.new("RGB", (64, 64), (0, 0, 200)).save(root / "blue.png")
    for stem in ("wave", "walk", "blue"):
        (root / f"{stem}.txt").write_text(f"kiln motion, {stem}")
    warnings = []
    ds = load_dataset(_cfg(tmp_path, frame_extraction="slide", target_frames=5, frame_stride=4),
                      warn=warnings.append)
    by = {}
    for e in ds.images:
        by.setdefault(e.path.name, []).append(e)
    assert set(by) == {"wave", "walk.mp4", "blue.png"}, (by, warnings)
    # 11 frames, windows of 5 every 4 -> starts 0, 4 (a third at 8 would run past the end).
    assert [e.frames for e in by["wave"]] == [(0, 1, 2, 3, 4), (4, 5, 6, 7, 8)]
    assert by["wave"][0].caption == "kiln motion, wave" and by["blue.png"][0].frames == ()
    ref = next(r for b in ds.epoch_plan(0, 1, seed=0) for r in b
               if ds.images[r.index].path.name == "wave" and ds.images[r.index].frames[0] == 4)
    pixels = ds.load_pixels(ref)
    assert pixels.shape == (5, 64, 64, 3)
    # Frame i is red 10 * i: the window starting at 4 reads frames 4..8 in order (a flip keeps the colour).
    assert [round(float(v) * 255) for v in pixels[:, 32, 32, 0]] == [40, 50, 60, 70, 80]


def test_a_flat_root_of_frame_folders_is_one_concept_and_the_key_follows_the_frames(tmp_path):
    a, b = _frames(tmp_path / "a", 5), _frames(tmp_path / "b", 5)
    (tmp_path / "notes").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "notes" / "cover.png")   # not numbered: not a clip
    assert is_frame_folder(a) and not is_frame_folder(tmp_path / "notes")
    ds = load_dataset(_cfg(tmp_path, target_frames=5), warn=lambda m: None)
    assert sorted(e.path.name for e in ds.images) == ["a", "b"]
    assert all(len(e.frames) == 5 for e in ds.images)
    before = clip_digest(a)
    Image.new("RGB", (64, 64), (1, 2, 3)).save(a / "0003.png")
    assert clip_digest(a) != before and clip_digest(a) != clip_digest(b)


def test_a_frame_folder_with_a_broken_frame_is_named_once_and_skipped(tmp_path):
    root = tmp_path / "1_motion"
    _frames(root / "good", 5)
    bad = _frames(root / "bad", 5)
    (bad / "0001.png").write_bytes(b"not a png" * 10)
    warnings = []
    ds = load_dataset(_cfg(tmp_path, target_frames=5), warn=warnings.append)
    assert [e.path.name for e in ds.images] == ["good"]
    named = [w for w in warnings if "bad" in w]
    assert len(named) == 1 and "0001.png" in named[0], warnings


def test_the_memory_estimate_prices_the_longest_clip_window_not_the_first_batch(tmp_path):
    from kiln.core.train.estimate import heaviest_batch
    root = tmp_path / "1_mix"
    _frames(root / "long", 13)
    _frames(root / "short", 5)
    Image.new("RGB", (64, 64)).save(root / "still.png")
    ds = load_dataset(_cfg(tmp_path, frame_extraction="full"), warn=lambda m: None)
    plan = [[r] for b in ds.epoch_plan(0, 1, seed=0) for r in b]
    heaviest = heaviest_batch(ds, plan)
    assert ds.images[heaviest[0].index].path.name == "long" and len(ds.images[heaviest[0].index].frames) == 13
    assert heaviest_batch(ds, []) is None
