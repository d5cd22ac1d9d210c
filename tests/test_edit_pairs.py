"""Paired control images for edit LoRAs (core/data/controls.py): pairing by stem, every missing control named,
one and three controls, and controls cut exactly like their target."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from core.data.config import DatasetError
from core.data.controls import control_dirs, control_names, control_pixels, pair_controls
from core.data.scan import find_images


def _img(path, size=(64, 48), colour=(200, 30, 30)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path)
    return path


def test_pairs_by_stem_across_extensions(tmp_path):
    for s in ("a", "b"):
        _img(tmp_path / f"{s}.png")
        _img(tmp_path / "control" / f"{s}.jpg")
    pairs = pair_controls(tmp_path, find_images(tmp_path), "control")
    assert [tuple(p.name for p in t) for t in pairs] == [("a.jpg",), ("b.jpg",)]


def test_no_control_folder_means_no_controls(tmp_path):
    _img(tmp_path / "a.png")
    assert pair_controls(tmp_path, find_images(tmp_path), "control") == [()]


def test_every_missing_control_is_named(tmp_path):
    for s in ("a", "b", "c"):
        _img(tmp_path / f"{s}.png")
    _img(tmp_path / "control_1" / "a.png")
    _img(tmp_path / "control_1" / "b.png")
    _img(tmp_path / "control_2" / "a.png")
    with pytest.raises(DatasetError) as e:
        pair_controls(tmp_path, find_images(tmp_path), "control")
    msg = str(e.value)
    assert "3 control image(s) missing" in msg
    assert "c.png (no control_1/c.*)" in msg and "b.png (no control_2/b.*)" in msg and "c.png (no control_2/c.*)" in msg
    assert "a.png" not in msg.split("missing:")[1]


def test_three_controls_in_order(tmp_path):
    _img(tmp_path / "x.png")
    for n in (3, 1, 2):
        _img(tmp_path / f"control_{n}" / "x.webp")
    (pair,) = pair_controls(tmp_path, find_images(tmp_path), "control")
    assert [p.parent.name for p in pair] == ["control_1", "control_2", "control_3"]


def test_four_control_folders_refused(tmp_path):
    for n in ("control", "control_1", "control_2", "control_3"):
        (tmp_path / n).mkdir()
    with pytest.raises(DatasetError, match="at most 3"):
        control_dirs(tmp_path, "control")


def test_control_name_must_be_a_name():
    assert control_names("ctl") == ["ctl", "ctl_1", "ctl_2", "ctl_3"]
    with pytest.raises(DatasetError, match="plain folder name"):
        control_names("../elsewhere")


def test_control_cut_like_its_target(tmp_path):
    # A left/right split control scaled to 128x96, cropped at x=32 to 64x96 and flipped: the colours swap sides.
    im = Image.new("RGB", (64, 48), (255, 0, 0))
    im.paste((0, 0, 255), (32, 0, 64, 48))
    im.save(tmp_path / "c.png")
    px = control_pixels(tmp_path / "c.png", (128, 96), (32, 0), (64, 96), flip=True).numpy()
    assert px.shape == (96, 64, 3)
    assert np.allclose(px[:, :20], [0, 0, 1], atol=0.02) and np.allclose(px[:, -20:], [1, 0, 0], atol=0.02)
    plain = control_pixels(tmp_path / "c.png", (128, 96), (32, 0), (64, 96), flip=False).numpy()
    assert np.allclose(plain[:, :20], [1, 0, 0], atol=0.02)


def test_unreadable_control_named(tmp_path):
    (tmp_path / "bad.png").write_bytes(b"not an image")
    with pytest.raises(DatasetError, match="bad.png"):
        control_pixels(tmp_path / "bad.png", (64, 64), (0, 0), (64, 64), flip=False)
