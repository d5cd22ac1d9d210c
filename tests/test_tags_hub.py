"""Finding tagger models: the folder layouts the most used ComfyUI tagger uses, huggingface_hub's local cache
(HF_HUB_OFFLINE=1, no network), and the errors that say where to put a missing model."""
import pytest

from kiln.core.tags.hub import TaggerModelMissing, ensure_model, find_local, local_names
from kiln.core.tags.labels import Labels
from kiln.core.tags.tagger import TagSettings, tag_images
from tiny_tagger import write_tiny_tagger

COMMIT = "b" * 40


def hub_cache(root, name):
    """A huggingface_hub cache as a download leaves it: blobs, a snapshot of symlinks, refs/main."""
    repo = root / f"models--SmilingWolf--{name}"
    blobs, snap = repo / "blobs", repo / "snapshots" / COMMIT
    blobs.mkdir(parents=True)
    snap.mkdir(parents=True)
    onnx_path, csv_path = write_tiny_tagger(root / "built", name="m", size=32)
    for src, dst, blob in ((onnx_path, "model.onnx", "1" * 40), (csv_path, "selected_tags.csv", "2" * 40)):
        (blobs / blob).write_bytes(src.read_bytes())
        (snap / dst).symlink_to(f"../../blobs/{blob}")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(COMMIT)
    return blobs


def test_cached_model_is_linked_into_the_models_folder_and_runs(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    blobs = hub_cache(tmp_path / "hub", "wd-swinv2-tagger-v3")
    models = tmp_path / "models" / "wd14_tagger"
    files = ensure_model("wd-swinv2-tagger-v3", [models], cache_dir=str(tmp_path / "hub"))
    assert files.model == models / "wd-swinv2-tagger-v3.onnx" and files.tags == models / "wd-swinv2-tagger-v3.csv"
    assert files.model.stat().st_ino == (blobs / ("1" * 40)).stat().st_ino   # a hard link, not a second copy
    assert not list(models.glob("*.tmp")) and local_names([models]) == ["wd-swinv2-tagger-v3"]
    labels = Labels.from_csv(files.tags)
    from PIL import Image
    (res,) = tag_images([Image.new("RGB", (40, 30), "red")], files.model, labels, TagSettings(0.0, 0.0))
    assert len(res.tags) > 0
    # next time it is found in the folder, even with the cache gone
    (blobs / ("1" * 40)).unlink()
    assert ensure_model("wd-swinv2-tagger-v3", [models], cache_dir=str(tmp_path / "hub")) == files


def test_missing_model_offline_says_where_to_put_it(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")   # offline by the environment, not by the argument
    models = tmp_path / "wd14_tagger"
    with pytest.raises(TaggerModelMissing) as err:
        ensure_model("wd-vit-large-tagger-v3", [models], cache_dir=str(tmp_path / "empty-hub"))
    msg = str(err.value)
    assert "offline" in msg and str(models / "wd-vit-large-tagger-v3.onnx") in msg
    assert "https://huggingface.co/SmilingWolf/wd-vit-large-tagger-v3" in msg and "selected_tags.csv" in msg
    with pytest.raises(TaggerModelMissing, match="my-own-tagger"):
        ensure_model("my-own-tagger", [models, tmp_path / "other"], offline=True)


def test_both_folder_layouts_are_found_and_half_models_are_not(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    write_tiny_tagger(a, name="flat-tagger", size=32)
    nested_model, nested_csv = write_tiny_tagger(b / "nested-tagger", name="x", size=32)
    nested_model.rename(b / "nested-tagger" / "model.onnx")
    nested_csv.rename(b / "nested-tagger" / "selected_tags.csv")
    (a / "lonely.onnx").write_bytes(b"")   # no tag list beside it
    assert local_names([a, b]) == ["flat-tagger", "nested-tagger"]
    assert find_local("nested-tagger", [a, b]).model == b / "nested-tagger" / "model.onnx"
    assert find_local("lonely", [a, b]) is None
    assert ensure_model("flat-tagger", [tmp_path / "empty", a], offline=True).model == a / "flat-tagger.onnx"
