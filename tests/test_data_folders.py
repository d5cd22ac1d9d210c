"""Folders the kohya way, captions and their mix-ups, regularization, step arithmetic, the plan, metadata."""
import json
import math

import pytest
from PIL import Image

from kiln.core.data import DatasetConfig, DatasetError, dataset_fingerprint, load_dataset

# buckets at this size: 64x64, 96x32, 32x96, 128x32, 32x128 (a 192x64 image goes to 96x32)
SMALL = dict(resolution=64, min_bucket_reso=32, max_bucket_reso=128, bucket_reso_steps=32)


def img(path, size=(64, 64), color=(200, 30, 30)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path)
    return path


def load(path, warn=None, **kw):
    return load_dataset(DatasetConfig(path=str(path), **{**SMALL, **kw}), warn=(warn.append if warn is not None else print))


def test_n_name_concepts_repeats_and_class_text(tmp_path):
    for i in range(3):
        img(tmp_path / "10_alice" / f"a{i}.png")
    (tmp_path / "10_alice" / "a0.txt").write_text("alice, red dress\n")
    for i in range(2):
        img(tmp_path / "4_bob smith" / f"b{i}.JPG", (96, 64))
    warnings = []
    ds = load(tmp_path, warnings)
    caps = {e.path.name: (e.caption, e.repeats, e.concept) for e in ds.images}
    assert caps["a0.png"] == ("alice, red dress", 10, "10_alice")
    assert caps["a1.png"] == ("alice", 10, "10_alice")           # no caption file -> class text
    assert caps["b0.JPG"] == ("bob smith", 4, "4_bob smith")     # upper-case extension found too
    assert len(ds) == 5 and ds.samples_per_epoch() == 3 * 10 + 2 * 4
    assert any("2 image(s)" in w and "class text 'alice'" in w for w in warnings)


def test_flat_folder_uses_the_repeats_input(tmp_path):
    for i in range(4):
        img(tmp_path / f"{i}.png")
    ds = load(tmp_path, repeats=7)
    assert ds.samples_per_epoch() == 28 and {e.repeats for e in ds.images} == {7}


def test_concept_folder_given_directly_is_used_with_its_own_repeats(tmp_path):
    img(tmp_path / "6_lisa" / "x.png")
    warnings = []
    ds = load(tmp_path / "6_lisa", warnings, repeats=1)
    assert ds.images[0].repeats == 6 and ds.images[0].caption == "lisa"
    assert any("parent folder" in w for w in warnings)


def test_folders_not_named_n_name_are_a_clear_error(tmp_path):
    img(tmp_path / "alice" / "a.png")
    with pytest.raises(DatasetError, match="10_alice"):
        load(tmp_path)


def test_hidden_files_zero_repeats_and_loose_images_beside_concepts(tmp_path):
    img(tmp_path / "2_a" / "ok.png")
    (tmp_path / "2_a" / "._ok.png").write_bytes(b"\x00\x05\x16\x07 AppleDouble")   # macOS resource fork
    img(tmp_path / "0_b" / "never.png")
    img(tmp_path / "loose.png")
    warnings = []
    ds = load(tmp_path, warnings)
    assert [e.path.name for e in ds.images] == ["ok.png"]
    assert not any("._ok.png" in w for w in warnings)                  # not reported as a broken image
    assert any("0 repeats" in w for w in warnings) and any("loose.png" in w for w in warnings)


def test_missing_empty_and_unusable_folders_are_clear_errors(tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        load(tmp_path / "nope")
    with pytest.raises(DatasetError, match="no dataset folder given"):
        load("")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="N_name"):
        load(tmp_path / "empty")
    (tmp_path / "junk" / "1_x").mkdir(parents=True)
    (tmp_path / "junk" / "1_x" / "bad.png").write_bytes(b"not a png")
    with pytest.raises(DatasetError, match="unreadable"):
        load(tmp_path / "junk")
    img(tmp_path / "ok" / "a.png")
    with pytest.raises(DatasetError, match="caption_phrase is empty"):
        load(tmp_path / "ok", caption_source="phrase")
    with pytest.raises(DatasetError, match="regularization folder"):
        load(tmp_path / "ok", reg_path=str(tmp_path / "no-reg"))


def test_txt_expected_but_caption_files_there(tmp_path):
    img(tmp_path / "1_x" / "a.png")
    (tmp_path / "1_x" / "a.caption").write_text("from caption file")
    warnings = []
    ds = load(tmp_path, warnings)
    assert ds.images[0].caption == "x"
    assert any("no '.txt' caption" in w and "'.caption' files are there" in w and "caption_extension" in w
               for w in warnings)
    assert load(tmp_path, caption_extension="caption").images[0].caption == "from caption file"   # dot optional


def test_caption_expected_but_txt_files_there(tmp_path):
    img(tmp_path / "1_x" / "a.png")
    (tmp_path / "1_x" / "a.txt").write_text("from txt")
    warnings = []
    ds = load(tmp_path, warnings, caption_extension=".caption")
    assert ds.images[0].caption == "x"
    assert any("no '.caption' caption" in w and "'.txt' files are there" in w for w in warnings)


def test_caption_file_bom_lines_and_empty_files(tmp_path):
    img(tmp_path / "1_x" / "a.png")
    (tmp_path / "1_x" / "a.txt").write_bytes("\ufeffzyx, smile\nred dress\n".encode("utf-8"))
    img(tmp_path / "1_x" / "b.png")
    (tmp_path / "1_x" / "b.txt").write_text("  \n")
    warnings = []
    ds = load(tmp_path, warnings)
    caps = {e.path.name: e.caption for e in ds.images}
    assert caps == {"a.png": "zyx, smile, red dress", "b.png": "x"}
    assert any("empty caption file" in w and "b.txt" in w for w in warnings)


def test_phrase_and_none_caption_sources(tmp_path):
    img(tmp_path / "1_x" / "a.png")
    (tmp_path / "1_x" / "a.txt").write_text("ignored")
    assert load(tmp_path, caption_source="phrase", caption_phrase="zyx woman").images[0].caption == "zyx woman"
    assert load(tmp_path, caption_source="none").images[0].caption == ""


@pytest.mark.parametrize("images, repeats, epochs, batch", [(34, 6, 10, 1), (5, 3, 7, 4), (7, 1, 3, 2), (10, 10, 1, 3)])
def test_total_steps_one_bucket(tmp_path, images, repeats, epochs, batch):
    for i in range(images):
        img(tmp_path / f"{repeats}_c" / f"{i}.png")
    ds = load(tmp_path)
    # images x repeats x epochs / batch, rounded up per epoch (an epoch's last batch may be partial)
    assert ds.steps_per_epoch(batch) == math.ceil(images * repeats / batch)
    assert ds.total_steps(epochs, batch) == math.ceil(images * repeats / batch) * epochs
    assert len(ds.epoch_plan(0, batch, seed=3)) == ds.steps_per_epoch(batch)


def test_steps_round_up_per_bucket(tmp_path):
    for i in range(3):
        img(tmp_path / "10_a" / f"a{i}.png")            # 64x64 bucket: 30 samples
    for i in range(2):
        img(tmp_path / "4_b" / f"b{i}.png", (192, 64))  # 96x32 bucket: 8 samples
    ds = load(tmp_path)
    assert len({e.bucket for e in ds.images}) == 2
    assert ds.steps_per_epoch(4) == math.ceil(30 / 4) + math.ceil(8 / 4) == 10
    assert ds.total_steps(3, 4) == 30
    plan = ds.epoch_plan(0, 4, seed=1)
    assert len(plan) == 10 and all(len({r.bucket for r in b}) == 1 for b in plan)
    assert sorted(r.index for b in plan for r in b) == sorted(i for i, e in enumerate(ds.images) for _ in range(e.repeats))
    assert plan == ds.epoch_plan(0, 4, seed=1) and plan != ds.epoch_plan(1, 4, seed=1) and plan != ds.epoch_plan(0, 4, 2)


@pytest.mark.parametrize("n_reg", [1, 3, 40])
def test_regularization_balanced_every_epoch(tmp_path, n_reg):
    for i in range(2):
        img(tmp_path / "train" / "3_alice" / f"a{i}.png")
    for i in range(n_reg):
        img(tmp_path / "reg" / "1_woman" / f"r{i}.png", (64, 64) if i % 2 else (192, 64))   # two buckets
    ds = load(tmp_path / "train", reg_path=str(tmp_path / "reg"), prior_loss_weight=0.5)
    # kohya: as many reg samples as training samples (2 x 3 = 6), cycled when fewer, a subset when more
    assert ds.samples_per_epoch() == 12
    for epoch in range(4):
        plan = ds.epoch_plan(epoch, 2, seed=0)
        refs = [r for b in plan for r in b]
        assert sum(r.is_reg for r in refs) == 6 and sum(not r.is_reg for r in refs) == 6
        assert len(plan) == ds.steps_per_epoch(2)     # the same step count in every epoch
    if n_reg == 40:   # different reg images in different epochs
        seen = [{r.index for b in ds.epoch_plan(e, 2, 0) for r in b if r.is_reg} for e in range(2)]
        assert seen[0] != seen[1]
    meta = ds.training_metadata()
    assert json.loads(meta["ss_reg_dataset_dirs"]) == {"1_woman": {"n_repeats": 1, "img_count": n_reg}}
    assert json.loads(meta["ss_dataset_dirs"]) == {"3_alice": {"n_repeats": 3, "img_count": 2}}
    assert meta["ss_num_reg_images"] == str(n_reg) and meta["ss_num_train_images"] == "6"
    assert meta["ss_prior_loss_weight"] == "0.5"


def test_training_metadata_like_kohya(tmp_path):
    for i in range(3):
        img(tmp_path / "5_zyx" / f"{i}.png", (64, 64) if i else (192, 64))
        (tmp_path / "5_zyx" / f"{i}.txt").write_text("zyx, Smile, red dress" if i else "zyx, smile")
    ds = load(tmp_path)
    meta = ds.training_metadata()
    assert all(isinstance(v, str) for v in meta.values())
    assert json.loads(meta["ss_tag_frequency"]) == {"5_zyx": {"zyx": 3, "smile": 3, "red dress": 2}}  # lower-cased
    info = json.loads(meta["ss_bucket_info"])
    assert sorted((tuple(b["resolution"]), b["count"]) for b in info["buckets"].values()) == \
        sorted([(ds.images[0].bucket, 5), (ds.images[1].bucket, 10)])
    assert meta["ss_resolution"] == "(64, 64)" and meta["ss_min_bucket_reso"] == "32"
    summary = ds.summary(batch_size=2, epochs=3)
    assert "3 training images" in summary and "5_zyx: 3 images x 5 repeats" in summary
    assert f"{ds.steps_per_epoch(2)} steps per epoch x 3 epochs = {ds.total_steps(3, 2)} steps" in summary
    assert "2 buckets" in summary and "smile (3)" in summary


def test_map_captions_is_a_new_value(tmp_path):
    img(tmp_path / "1_x" / "a.png")
    (tmp_path / "1_x" / "a.txt").write_text("red_dress, smile")
    ds = load(tmp_path)
    ds2 = ds.map_captions(lambda c: c.replace("red_dress", "zyxdress"))
    assert ds.images[0].caption == "red_dress, smile" and ds2.images[0].caption == "zyxdress, smile"
    assert ds2.tag_frequency() == {"1_x": {"zyxdress": 1, "smile": 1}}
    assert ds2.load_pixels(ds2.epoch_plan(0, 1, 0)[0][0]).shape == (64, 64, 3)


def test_fingerprint_changes_with_the_files(tmp_path):
    img(tmp_path / "1_x" / "a.png")
    before = dataset_fingerprint(str(tmp_path))
    assert dataset_fingerprint(str(tmp_path)) == before
    (tmp_path / "1_x" / "a.txt").write_text("new caption")
    assert dataset_fingerprint(str(tmp_path)) != before
