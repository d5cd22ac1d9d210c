"""Per-step caption processing: shuffle with keep_tokens / a separator, caption and tag dropout, prefix/suffix."""
import random

from kiln.core.data import DatasetConfig
from kiln.core.data.captions import captions_vary, process_caption


def outs(caption, cfg, n=40):
    return [process_caption(caption, cfg, random.Random(s)) for s in range(n)]


def test_no_processing_is_identity_up_to_spacing():
    cfg = DatasetConfig(path="")
    assert process_caption("a,b ,  c", cfg, random.Random(0)) == "a, b, c"
    assert not captions_vary(cfg)


def test_shuffle_keeps_the_first_keep_tokens():
    cfg = DatasetConfig(path="", shuffle_caption=True, keep_tokens=2)
    got = outs("zyx, woman, a, b, c, d", cfg)
    assert len(set(got)) > 5 and all(o.startswith("zyx, woman, ") for o in got)
    assert all(sorted(o.split(", ")[2:]) == ["a", "b", "c", "d"] for o in got)
    assert captions_vary(cfg)


def test_keep_tokens_separator_with_fixed_head_and_tail():
    cfg = DatasetConfig(path="", shuffle_caption=True, keep_tokens_separator="|||")
    got = outs("zyx, woman ||| a, b, c ||| masterpiece", cfg)
    assert len(set(got)) > 3
    assert all(o.startswith("zyx, woman, ") and o.endswith(", masterpiece") for o in got)
    assert all(sorted(o.split(", ")[2:5]) == ["a", "b", "c"] for o in got)


def test_caption_dropout_empties_the_whole_caption_at_the_rate():
    cfg = DatasetConfig(path="", caption_dropout_rate=0.25, caption_prefix="zyx")
    got = outs("a, b", cfg, 2000)
    empty = sum(o == "" for o in got)
    assert 400 < empty < 600 and all(o in ("", "zyx, a, b") for o in got)


def test_tag_dropout_spares_kept_tokens_and_prefix():
    cfg = DatasetConfig(path="", tag_dropout_rate=0.5, keep_tokens=1, caption_prefix="trig")
    got = outs("keep, t1, t2, t3, t4", cfg, 400)
    assert all(o.startswith("trig, keep") for o in got)
    mean_kept = sum(len(o.split(", ")) - 2 for o in got) / len(got)
    assert 1.6 < mean_kept < 2.4                                 # about half of the 4 flexible tags
    assert process_caption("keep, a", DatasetConfig(path="", tag_dropout_rate=1.0, keep_tokens=1), random.Random(0)) == "keep"


def test_prefix_and_suffix_outside_the_shuffle():
    cfg = DatasetConfig(path="", shuffle_caption=True, caption_prefix="zyx, ", caption_suffix=", by me")
    got = outs("a, b, c", cfg)
    assert all(o.startswith("zyx, ") and o.endswith(", by me") for o in got)
    assert process_caption("", DatasetConfig(path="", caption_prefix="zyx"), random.Random(0)) == "zyx"


def test_dataset_caption_is_deterministic_in_the_seed(tmp_path):
    from PIL import Image
    from kiln.core.data import load_dataset
    Image.new("RGB", (64, 64)).save(tmp_path / "a.png")
    (tmp_path / "a.txt").write_text("a, b, c, d, e, f")
    ds = load_dataset(DatasetConfig(path=str(tmp_path), resolution=64, min_bucket_reso=64, shuffle_caption=True))
    ref = ds.epoch_plan(0, 1, 0)[0][0]
    assert ds.caption(ref, 7) == ds.caption(ref, 7)
    assert len({ds.caption(ref, s) for s in range(20)}) > 5
    assert ds.captions_vary()


def test_trigger_prefix_is_not_put_on_regularization_images(tmp_path):
    from PIL import Image
    from kiln.core.data import load_dataset
    for sub in ("train/2_zyx woman", "reg/1_woman"):
        (tmp_path / sub).mkdir(parents=True)
        Image.new("RGB", (64, 64)).save(tmp_path / sub / "a.png")
    ds = load_dataset(DatasetConfig(path=str(tmp_path / "train"), reg_path=str(tmp_path / "reg"), resolution=64,
                                    min_bucket_reso=64, caption_prefix="zyx"))
    caps = {(r.is_reg, ds.caption(r, 0)) for b in ds.epoch_plan(0, 1, 0) for r in b}
    assert caps == {(False, "zyx, zyx woman"), (True, "woman")}
