"""Dataset reliability: legacy caption encodings, warnings that count right, bounded memory."""
import os
import resource
import subprocess
import sys
from pathlib import Path

from PIL import Image

from kiln.core.data import DatasetConfig, load_dataset
from kiln.core.data.caption_files import decode_caption_bytes


def _img(path, size=(64, 64), colour=(200, 30, 30)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path)


def _cfg(root, **kw):
    return DatasetConfig(path=str(root), resolution=64, min_bucket_reso=64, max_bucket_reso=128, bucket_reso_steps=64, **kw)


def test_latin1_and_cp1252_captions_decode_without_replacement_and_warn_once(tmp_path):
    folder = tmp_path / "2_thing"
    for i, raw in enumerate([b"caf\xe9, na\xefve", b"\x93quoted\x94 \x80 price", "déjà vu".encode("utf-8"),
                             b"\xef\xbb\xbfbom, tag"]):
        _img(folder / f"{i}.png")
        (folder / f"{i}.txt").write_bytes(raw)
    warnings = []
    ds = load_dataset(_cfg(tmp_path), warn=warnings.append)
    caps = {e.path.name: e.caption for e in ds.images}
    assert caps["0.png"] == "café, naïve" and caps["1.png"] == "\u201cquoted\u201d \u20ac price"
    assert caps["2.png"] == "déjà vu" and caps["3.png"] == "bom, tag"
    assert not any("\ufffd" in c for c in caps.values())
    import json
    assert "café" in json.loads(ds.training_metadata()["ss_tag_frequency"])["2_thing"]
    legacy = [w for w in warnings if "not UTF-8" in w]
    assert len(legacy) == 1 and "0.txt" in legacy[0] and "1.txt" in legacy[0] and "2.txt" not in legacy[0]
    assert decode_caption_bytes(b"\x81\x8d")[1] == "latin-1"


def test_no_caption_count_skips_unreadable_images_and_orphans_and_tiny_images_are_named(tmp_path):
    folder = tmp_path / "3_thing"
    _img(folder / "a.png")
    (folder / "a.txt").write_text("a caption")
    _img(folder / "b.png")                                 # no caption: counted
    (folder / "broken.png").write_bytes(b"not a png")      # no caption, unreadable: not counted
    (folder / "gone.txt").write_text("image was deleted")  # orphan caption
    _img(folder / "tiny.png", size=(2, 2))
    (folder / "tiny.txt").write_text("tiny")
    warnings = []
    ds = load_dataset(_cfg(tmp_path), warn=warnings.append)
    assert len(ds) == 3
    no_caption = [w for w in warnings if "have no '.txt' caption" in w]
    assert len(no_caption) == 1 and no_caption[0].startswith("Kiln: 1 image(s)")
    assert any("gone.txt" in w and "no image" in w for w in warnings)
    assert any("tiny.png (2x2)" in w and "scaled up" in w for w in warnings)
    assert not any("a.png" in w for w in warnings)


BENCH = Path(__file__).resolve().parent.parent / "bench" / "bench_dataset_scale.py"


def test_dataset_memory_growth_per_image_is_bounded(tmp_path):
    """Peak RSS of loading 40 and 160 images of 512 px (each in a fresh process): the growth per image
    must be far below one kept image (512x512x4 bytes = 1 MiB)."""
    def peak_kib(n):
        out = subprocess.run([sys.executable, str(BENCH), "--child", str(n), str(tmp_path / f"n{n}")],
                             capture_output=True, text=True, check=True, env=dict(os.environ, OMP_NUM_THREADS="1"))
        return int(out.stdout.split()[-1])
    small, large = peak_kib(40), peak_kib(160)
    per_image = (large - small) / 120
    assert per_image < 256, f"RSS grows {per_image:.0f} KiB per image ({small} -> {large} KiB)"
