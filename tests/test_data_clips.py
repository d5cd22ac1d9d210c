"""Clips as data (core/data/clips.py): frame counts a video VAE encodes whole, musubi-tuner's frame sampling modes,
target fps, streamed decoding of real files written here with PyAV, frame folders, and broken clips named."""
import numpy as np
import pytest

from kiln.core.data.clips import (ClipError, ClipInfo, FrameSampling, encodable_frames, frame_files, frame_windows,
                                  probe_clip, read_frame_folder, read_frames)

av = pytest.importorskip("av")


def write_clip(path, frames=20, size=(32, 24), fps=24, codec="mpeg4"):
    """A clip whose frame i is a flat grey of value 10 * i (so a decoded frame says which it is)."""
    with av.open(str(path), "w") as out:
        stream = out.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = size[0], size[1], "yuv420p"
        for i in range(frames):
            img = np.full((size[1], size[0], 3), min(250, 10 * i), np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


@pytest.mark.parametrize("n,temporal,expected", [(17, 4, 17), (20, 4, 17), (16, 4, 13), (1, 4, 1), (0, 4, 1),
                                                 (33, 8, 33), (40, 8, 33), (8, 8, 1)])
def test_encodable_frame_counts(n, temporal, expected):
    assert encodable_frames(n, temporal) == expected


def test_sampling_modes_give_encodable_windows():
    info = ClipInfo(frames=40, fps=24.0, size=(32, 24))
    head = frame_windows(info, FrameSampling("head", frames=17))
    assert head == [tuple(range(17))]
    chunks = frame_windows(info, FrameSampling("chunk", frames=17))
    assert [w[0] for w in chunks] == [0, 17] and all(len(w) == 17 for w in chunks)
    slide = frame_windows(info, FrameSampling("slide", frames=9, stride=10))
    assert [w[0] for w in slide] == [0, 10, 20, 30] and all(len(w) == 9 for w in slide)
    uniform = frame_windows(info, FrameSampling("uniform", frames=9, samples=3))
    assert [w[0] for w in uniform] == [0, 16, 31]
    assert frame_windows(info, FrameSampling("full")) == [tuple(range(37))]
    # LTX-2's 8x temporal compression: 8k + 1 frames.
    assert len(frame_windows(info, FrameSampling("head", frames=20, temporal=8))[0]) == 17
    # A short clip gives one window of what it has.
    assert frame_windows(ClipInfo(6, 24.0, (8, 8)), FrameSampling("head", frames=17)) == [tuple(range(5))]
    with pytest.raises(ValueError, match="frame sampling"):
        FrameSampling("random")


def test_target_fps_picks_frames_by_time():
    info = ClipInfo(frames=48, fps=24.0, size=(8, 8))
    windows = frame_windows(info, FrameSampling("head", frames=9, target_fps=12))
    assert windows == [tuple(range(0, 18, 2))]


def test_a_real_clip_is_probed_and_decoded_in_one_pass(tmp_path):
    path = write_clip(tmp_path / "walk.mp4", frames=20)
    info = probe_clip(path)
    assert info.frames == 20 and info.size == (32, 24) and abs(info.fps - 24) < 0.5
    window = frame_windows(info, FrameSampling("slide", frames=5, stride=6))[1]
    frames = read_frames(path, window)
    assert frames.shape == (5, 24, 32, 3) and frames.dtype == np.uint8
    # Each decoded frame is the one asked for (grey level 10 x index, within the codec's error).
    np.testing.assert_allclose(frames.reshape(5, -1).mean(axis=1), [10 * i for i in window], atol=6)


def test_gif_and_frame_folders_read(tmp_path):
    from PIL import Image
    frames = [Image.new("RGB", (16, 16), (20 * i, 0, 0)) for i in range(6)]
    frames[0].save(tmp_path / "spin.gif", save_all=True, append_images=frames[1:], duration=40)
    info = probe_clip(tmp_path / "spin.gif")
    assert info.frames == 6
    assert read_frames(tmp_path / "spin.gif", (0, 4)).shape == (2, 16, 16, 3)
    folder = tmp_path / "frames"
    folder.mkdir()
    for i, im in enumerate(frames):
        im.save(folder / f"frame_{i + 1:03d}.png")
    (folder / "notes.txt").write_text("not a frame")
    files = frame_files(folder)
    assert [f.name for f in files] == [f"frame_{i:03d}.png" for i in range(1, 7)]
    assert read_frame_folder(files, (1, 2))[:, 0, 0, 0].tolist() == [20, 40]


def test_a_broken_clip_is_named_with_the_fix(tmp_path):
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 4)
    with pytest.raises(ClipError, match="broken.mp4.*re-encode"):
        probe_clip(bad)
    truncated = tmp_path / "cut.mp4"
    whole = write_clip(tmp_path / "whole.mp4", frames=30).read_bytes()
    truncated.write_bytes(whole[: len(whole) // 3])
    with pytest.raises(ClipError, match="cut.mp4"):
        info = probe_clip(truncated)
        read_frames(truncated, tuple(range(info.frames)))


def _mixed_folder(root):
    """1_motion: two clips (20 and 9 frames) and two images, each captioned; plus a broken clip."""
    from PIL import Image
    folder = root / "1_motion"
    folder.mkdir(parents=True)
    write_clip(folder / "walk.mp4", frames=20, size=(64, 64))
    write_clip(folder / "turn.mp4", frames=9, size=(64, 64))
    (folder / "broken.mp4").write_bytes(b"not a video at all" * 40)
    for name, colour in (("red", (200, 30, 30)), ("blue", (30, 30, 200))):
        Image.new("RGB", (64, 64), colour).save(folder / f"{name}.png")
    for stem in ("walk", "turn", "broken", "red", "blue"):
        (folder / f"{stem}.txt").write_text(f"kiln motion, {stem}")
    return root


def test_a_folder_of_clips_and_images_loads_as_windows(tmp_path):
    from kiln.core.data import DatasetConfig, load_dataset
    from kiln.core.data.plan import batch_key
    warnings = []
    ds = load_dataset(DatasetConfig(path=str(_mixed_folder(tmp_path)), resolution=64, min_bucket_reso=64,
                                    max_bucket_reso=64, frame_extraction="slide", target_frames=9, frame_stride=8),
                      warn=warnings.append)
    by_name = {}
    for e in ds.images:
        by_name.setdefault(e.path.stem, []).append(e)
    # walk: 20 frames, windows of 9 every 8 frames -> starts 0, 8; turn: one window; images: still.
    assert [e.frames[0] for e in by_name["walk"]] == [0, 8] and all(len(e.frames) == 9 for e in by_name["walk"])
    assert [len(e.frames) for e in by_name["turn"]] == [9]
    assert by_name["red"][0].frames == () and by_name["red"][0].caption == "kiln motion, red"
    assert "broken" not in by_name and any("broken.mp4" in w for w in warnings), warnings
    # Batches never mix a still image with a clip window, nor windows of different lengths.
    assert {batch_key(e) for e in ds.images} == {(64, 64), (64, 64, 9)}
    for batch in ds.epoch_plan(0, 2, seed=0):
        assert len({batch_key(ds.images[r.index]) for r in batch}) == 1
    clip_ref = next(r for b in ds.epoch_plan(0, 1, seed=0) for r in b if ds.images[r.index].frames)
    pixels = ds.load_pixels(clip_ref)
    assert pixels.shape == (9, 64, 64, 3) and 0 <= float(pixels.min()) and float(pixels.max()) <= 1
    still = next(r for b in ds.epoch_plan(0, 1, seed=0) for r in b if not ds.images[r.index].frames)
    assert ds.load_pixels(still).shape == (64, 64, 3)
    # LTX-2's VAE encodes 8k+1 frames: a 9-frame window stays, a 13-frame one is cut to 9.
    assert {len(e.frames) for e in ds.for_temporal(8).images if e.frames} == {9}
    longer = load_dataset(DatasetConfig(path=str(tmp_path), resolution=64, min_bucket_reso=64, max_bucket_reso=64,
                                        target_frames=13), warn=lambda m: None)
    assert {len(e.frames) for e in longer.for_temporal(8).images if e.frames} == {9}
