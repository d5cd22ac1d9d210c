"""Host-free reliability pieces: file-name stems, Kiln's temp files, file permissions."""
import os
import stat

import pytest

from kiln.core.lora.io import (MAX_STEM_BYTES, atomic_write_bytes, lora_file_in_folder, remove_stale_temp_files,
                             short_file_stem)


def test_short_file_stem_caps_bytes_and_keeps_long_names_apart():
    for name in ["a" * 250, "猫" * 90, "é" * 200]:
        stem = short_file_stem(name)
        assert len(stem.encode("utf-8")) <= MAX_STEM_BYTES
        stem.encode("utf-8").decode("utf-8")   # never cut inside a character
    assert short_file_stem("a" * 250) != short_file_stem("a" * 249 + "b")
    assert short_file_stem("my lora/v2") == "my lora_v2"


def test_saved_files_honour_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        p = atomic_write_bytes(tmp_path / "x.safetensors", b"data")
        assert stat.S_IMODE(p.stat().st_mode) == 0o644
        os.umask(0o002)
        p = atomic_write_bytes(tmp_path / "y.safetensors", b"data")
        assert stat.S_IMODE(p.stat().st_mode) == 0o664
    finally:
        os.umask(old)


def test_only_kiln_temp_files_are_removed(tmp_path):
    (tmp_path / "sub").mkdir()
    ours = [tmp_path / ".a.safetensors.abcd1234.tmp", tmp_path / "sub" / ".state.json.zz_x9y8w.tmp"]
    others = [tmp_path / "a.tmp", tmp_path / ".a.tmp", tmp_path / "a.safetensors"]
    for p in ours + others:
        p.write_bytes(b"x")
    assert sorted(remove_stale_temp_files(tmp_path)) == sorted(ours)
    assert all(p.exists() for p in others)
    fresh = tmp_path / ".b.safetensors.abcd1234.tmp"
    fresh.write_bytes(b"x")
    assert remove_stale_temp_files(tmp_path, older_than_s=3600) == [] and fresh.exists()


def test_save_lora_file_names_are_capped_per_part_and_stay_in_the_folder(tmp_path):
    long_a, long_b = "a" * 250, "a" * 249 + "b"
    path = lora_file_in_folder(tmp_path, f"sub/{long_a}.safetensors")
    assert path.parent == (tmp_path / "sub").resolve() and len(path.stem.encode()) <= MAX_STEM_BYTES
    assert path != lora_file_in_folder(tmp_path, f"sub/{long_a[:-1]}b")   # long names sharing a start differ
    assert lora_file_in_folder(tmp_path, long_b) != lora_file_in_folder(tmp_path, long_a)
    cjk = lora_file_in_folder(tmp_path, "猫" * 90)
    assert len(cjk.name.encode()) < 255 and cjk.stem.startswith("猫")
    assert lora_file_in_folder(tmp_path, "my (v2) lora").name == "my (v2) lora.safetensors"   # short names as typed
    # Without overwrite an existing (capped) file gets a counter, still within the file-system limit.
    atomic_write_bytes(path, b"x")
    again = lora_file_in_folder(tmp_path, f"sub/{long_a}", overwrite=False)
    assert again != path and again.stem.endswith("_001") and len(again.name.encode()) < 255
    for bad in ("../outside", "/etc/x", ""):
        with pytest.raises(ValueError):
            lora_file_in_folder(tmp_path, bad)
