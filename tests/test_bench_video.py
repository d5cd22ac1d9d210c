"""bench/bench_video.py at tiny size: every clip's windows go through scan -> frames -> pixels, and peak RSS does
not grow with the number of clips (frames are decoded per window and never kept)."""
import sys
from pathlib import Path

import pytest

pytest.importorskip("av")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))


def test_bench_video_reads_every_window_with_flat_memory(capsys):
    import bench_video
    rows = bench_video.main(["--sizes", "3", "12", "--frames", "25", "--size", "96"])
    # 25 frames, windows of 17 every 8 -> starts 0 and 8: two windows per clip.
    assert [(n, windows) for n, _, windows, _ in rows] == [(3, 6), (12, 24)]
    (_, _, _, small), (_, _, _, large) = rows
    assert large < small * 1.15, (small, large)
    assert "peak RSS ratio" in capsys.readouterr().out
