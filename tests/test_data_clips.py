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
