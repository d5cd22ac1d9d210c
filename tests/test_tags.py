"""Tagging through the real onnxruntime with a tiny WD14-shaped model, the hub path against a local
cache, and the tag filters."""
import numpy as np
import pytest
from PIL import Image

from kiln.core.tags.filters import TagFilterSpec, apply_filter, frequency
from kiln.core.tags.hub import TaggerModelMissing, ensure_model, find_local
from kiln.core.tags.labels import Labels, display_name
from kiln.core.tags.tagger import (TagSettings, choose_providers, input_size, mcut_threshold, postprocess,
                                        preprocess, session_for, tag_images, write_caption)
from tiny_tagger import TAGS, write_tiny_tagger


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tagger")
    model, csv = write_tiny_tagger(folder)
    return model, Labels.from_csv(csv)


def images(folder, n=6):
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(n):
        p = folder / f"img{i}.{'png' if i % 2 else 'jpg'}"
        Image.new("RGB", (80 + 10 * i, 60), (40 * i % 255, 100, 200 - 20 * i)).save(p)
        out.append(p)
    return out


def test_preprocess_pads_white_resizes_and_swaps_to_bgr():
    img = Image.new("RGB", (40, 20), (255, 0, 0))
    arr = preprocess(img, 32)
    assert arr.shape == (32, 32, 3) and arr.dtype == np.float32
    assert tuple(arr[16, 16]) == (0.0, 0.0, 255.0)           # red in BGR order
    assert tuple(arr[0, 16]) == (255.0, 255.0, 255.0)        # white padding


def test_session_is_reused_and_input_size_is_read(tiny):
    model, _ = tiny
    s1, line = session_for(model)
    s2, _ = session_for(model)
    assert s1 is s2 and input_size(s1) == 64 and "CPUExecutionProvider" in line


def test_provider_choice_says_why():
    p, line = choose_providers(["CPUExecutionProvider"], cuda_usable=True)
    assert p == ["CPUExecutionProvider"] and "onnxruntime-gpu" in line
    p, line = choose_providers(["CUDAExecutionProvider", "CPUExecutionProvider"], cuda_usable=False)
    assert p == ["CPUExecutionProvider"] and "no CUDA GPU" in line
    p, _ = choose_providers(["CUDAExecutionProvider", "CPUExecutionProvider"], cuda_usable=True)
    assert p[0] == "CUDAExecutionProvider"


def test_batched_tagging_matches_one_at_a_time(tiny, tmp_path):
    model, labels = tiny
    paths = images(tmp_path)
    s = TagSettings(general_threshold=0.3, character_threshold=0.5)
    batched = tag_images(paths, model, labels, s, batch_size=4)
    single = tag_images(paths, model, labels, s, batch_size=1)
    assert [r.path for r in batched] == paths
    for a, b in zip(batched, single):
        assert [t for t, _ in a.tags] == [t for t, _ in b.tags]
        assert np.allclose([c for _, c in a.tags], [c for _, c in b.tags], atol=1e-5)


def test_corrupt_images_are_skipped_with_one_warning(tiny, tmp_path):
    model, labels = tiny
    paths = images(tmp_path, 2)
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"nope")
    warnings = []
    res = tag_images(paths + [bad], model, labels, TagSettings(), warn=warnings.append)
    assert len(res) == 2 and len(warnings) == 1 and "bad.png" in warnings[0]


def test_postprocess_thresholds_rating_exclude_and_kaomoji():
    labels = Labels(tuple(t for t, _ in TAGS), tuple(c for _, c in TAGS))
    probs = np.array([0.9, 0.1, 0.8, 0.7, 0.5, 0.4, 0.36, 0.2, 0.3, 0.1, 0.6, 0.34, 0.9, 0.1, 0.1], dtype=np.float32)
    tags = [t for t, _ in postprocess(probs, labels, TagSettings())]
    assert tags[0] == "hatsune miku"                            # character >= 0.85 first
    assert tags[1:] == ["1girl", "solo", "^_^", "red dress", "shirt", "white shirt"]
    tags = [t for t, _ in postprocess(probs, labels, TagSettings(include_rating=True, exclude=("red dress", "white_shirt")))]
    assert tags[0] == "general" and "red dress" not in tags and "white shirt" not in tags
    under = [t for t, _ in postprocess(probs, labels, TagSettings(replace_underscores=False))]
    assert "red_dress" in under
    assert display_name("^_^") == "^_^" and display_name("red_dress") == "red dress"
    assert mcut_threshold(np.array([0.9, 0.85, 0.3, 0.2])) == pytest.approx(0.575)


def test_write_caption_modes(tmp_path):
    p = tmp_path / "a.png"
    (tmp_path / "a.txt").write_text("old tag, smile")
    assert not write_caption(p, "new", "keep")
    write_caption(p, "smile, new tag", "append")
    assert (tmp_path / "a.txt").read_text() == "old tag, smile, new tag"
    write_caption(p, "fresh", "overwrite")
    assert (tmp_path / "a.txt").read_text() == "fresh"


def test_hub_path_uses_a_local_cache_offline(tmp_path, monkeypatch):
    """A pre-populated huggingface_hub cache (as a download leaves it) is found with no network."""
    name = "wd-vit-tagger-v3"
    repo_dir = tmp_path / "hub" / f"models--SmilingWolf--{name}"
    snap = repo_dir / "snapshots" / ("a" * 40)
    write_tiny_tagger(snap, name="model")
    (snap / "model.csv").rename(snap / "selected_tags.csv")
    (repo_dir / "refs").mkdir(parents=True)
    (repo_dir / "refs" / "main").write_text("a" * 40)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    models = tmp_path / "models"
    files = ensure_model(name, [models], offline=True, cache_dir=str(tmp_path / "hub"))
    assert files.model == models / f"{name}.onnx" and files.tags.is_file()
    assert find_local(name, [models]) == files
    with pytest.raises(TaggerModelMissing, match="wd-eva02-large-tagger-v3.onnx"):
        ensure_model("wd-eva02-large-tagger-v3", [models], offline=True, cache_dir=str(tmp_path / "hub"))


def test_filters_follow_the_guides():
    cap = "1girl, blue_eyes, blonde hair, long hair, ponytail, red_dress, shirt, white shirt, watermark, smile, smile"
    out = apply_filter(cap, TagFilterSpec(character_preset=True, remove_meta=True, trigger="zyxchar",
                                          replace=(("red_dress", "zyxdress"),), drop_implied=True))
    assert out == "zyxchar, 1girl, ponytail, zyxdress, white shirt, smile"
    assert apply_filter("a, b_c, bcd, x1, x2", TagFilterSpec(remove=("b c", "re:^x\\d$"))) == "a, bcd"
    assert apply_filter("a, long_hair, b", TagFilterSpec(remove=("*hair",))) == "a, b"
    cats = {"hatsune miku": "character", "vocaloid": "copyright"}
    assert apply_filter("hatsune_miku, vocaloid, smile", TagFilterSpec(remove_categories=("character", "copyright")),
                        categories=cats) == "smile"
    scores = {"a": 0.2, "b": 0.9, "c": 0.5}
    assert apply_filter("a, b, c", TagFilterSpec(max_tags=2), scores=scores) == "b, c"
    assert frequency(["a, b", "a"]) == {"a": 2, "b": 1}
