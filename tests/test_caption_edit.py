"""The caption editor's file work (core.data.caption_edit): confinement to the dataset folder ('../',
absolute paths, symlinks out of the dataset), atomic saves in the encoding the loader reads, bulk tag edits."""
import os

import pytest
from PIL import Image

from kiln.core.data import caption_edit as ce
from kiln.core.data.config import DatasetConfig
from kiln.core.data import load_dataset


@pytest.fixture(autouse=True)
def _no_extra_roots(monkeypatch):
    """The policy as a server with no opt-in has it (the host fixture opts the test folders in)."""
    monkeypatch.delenv("KILN_EXTRA_ROOTS", raising=False)


@pytest.fixture
def base(tmp_path):
    """An input folder holding dataset 'ds' (a 2_cat concept with three images) and a secret outside it."""
    inp = tmp_path / "input"
    concept = inp / "ds" / "2_cat"
    concept.mkdir(parents=True)
    for i, colour in enumerate(["red", "green", "blue"]):
        Image.new("RGB", (64, 64), colour).save(concept / f"img{i}.png")
    (concept / "img0.txt").write_text("cat, red_background, solo", encoding="utf-8")
    (concept / "img1.txt").write_bytes(ce.BOM + "cat, green background\nsmile".encode("utf-8"))
    (tmp_path / "secret.txt").write_text("do not touch")
    Image.new("RGB", (8, 8)).save(tmp_path / "secret.png")
    return inp


def test_listing_reads_captions_as_the_loader_and_counts_tags(base):
    root = ce.dataset_root(base, "ds")
    data = ce.listing(root)
    assert [i["file"] for i in data["images"]] == ["2_cat/img0.png", "2_cat/img1.png", "2_cat/img2.png"]
    assert data["images"][1]["tags"] == ["cat", "green background", "smile"]
    assert data["images"][2]["caption"] == ""
    assert data["frequency"]["cat"] == 2
    # spelling variants count as one tag, as in the frequency node
    assert sum(1 for t in data["frequency"] if t.replace("_", " ") == "red background") == 1


@pytest.mark.parametrize("dataset", ["../", "..", "ds/../../", "/etc", "", "nope"])
def test_dataset_outside_the_input_folder_is_refused(base, dataset):
    with pytest.raises(ce.CaptionEditError):
        ce.dataset_root(base, dataset)


@pytest.mark.parametrize("rel", ["../secret.png", "2_cat/../../../secret.png", "/etc/passwd", "..\\..\\secret.png",
                                 "C:/Windows/x.png"])
def test_paths_leaving_the_dataset_are_refused(base, rel):
    root = ce.dataset_root(base, "ds")
    with pytest.raises(ce.CaptionEditError):
        ce.image_path(root, rel)
    with pytest.raises(ce.CaptionEditError):
        ce.caption_path(root, rel)


def test_symlinks_out_of_the_dataset_are_refused(base, tmp_path):
    root = ce.dataset_root(base, "ds")
    concept = root / "2_cat"
    (concept / "escape.png").symlink_to(tmp_path / "secret.png")
    (concept / "outdir").symlink_to(tmp_path, target_is_directory=True)
    # a caption that is a symlink to a file outside: saving would write there
    (concept / "img2.txt").symlink_to(tmp_path / "secret.txt")
    with pytest.raises(ce.CaptionEditError, match="outside the dataset"):
        ce.image_path(root, "2_cat/escape.png")
    with pytest.raises(ce.CaptionEditError, match="outside the dataset"):
        ce.image_path(root, "2_cat/outdir/secret.png")
    with pytest.raises(ce.CaptionEditError, match="outside the dataset"):
        ce.caption_path(root, "2_cat/img2.png")
    with pytest.raises(ce.CaptionEditError):
        ce.bulk_edit(root, ["2_cat/img0.png", "2_cat/img2.png"], ["new"], [])
    assert (tmp_path / "secret.txt").read_text() == "do not touch"
    assert "new" not in (concept / "img0.txt").read_text()   # nothing written when one path is bad
    assert "2_cat/escape.png" not in ce.list_images(root)
    assert not any(f.startswith("2_cat/outdir") for f in ce.list_images(root))


def test_a_dataset_symlinked_into_the_input_folder_opens(base, tmp_path):
    elsewhere = tmp_path / "disk2" / "set"
    elsewhere.mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(elsewhere / "a.png")
    (base / "linked").symlink_to(elsewhere, target_is_directory=True)
    root = ce.dataset_root(base, "linked")
    assert ce.list_images(root) == ["a.png"]
    ce.write_caption(ce.caption_path(root, "a.png"), "x")
    assert (elsewhere / "a.txt").read_text() == "x"


def test_save_is_atomic_keeps_the_encoding_and_the_loader_reads_it(base):
    root = ce.dataset_root(base, "ds")
    bom_file = root / "2_cat" / "img1.txt"
    ce.write_caption(ce.caption_path(root, "2_cat/img1.png"), "cat, café au lait, smile\r\n")
    raw = bom_file.read_bytes()
    assert raw.startswith(ce.BOM) and raw[3:].decode("utf-8") == "cat, café au lait, smile"
    ce.write_caption(ce.caption_path(root, "2_cat/img2.png"), "cat, blue")
    assert (root / "2_cat" / "img2.txt").read_bytes() == b"cat, blue"
    assert not [p for p in (root / "2_cat").iterdir() if p.name.endswith(".tmp")]
    ds = load_dataset(DatasetConfig(path=str(root), resolution=64, min_bucket_reso=64, max_bucket_reso=64))
    captions = {e.path.name: e.caption for e in ds.images}
    assert captions["img1.png"] == "cat, café au lait, smile"
    assert captions["img2.png"] == "cat, blue"


def test_a_caption_that_is_not_utf8_is_refused_not_garbled(base):
    root = ce.dataset_root(base, "ds")
    (root / "2_cat" / "img2.txt").write_bytes("caf\xe9".encode("latin-1"))
    with pytest.raises(ce.CaptionEditError, match="not UTF-8"):
        ce.read_caption(ce.caption_path(root, "2_cat/img2.png"))
    assert "error" in ce.listing(root)["images"][2]


def test_other_caption_extensions_and_bad_ones(base):
    root = ce.dataset_root(base, "ds")
    ce.write_caption(ce.caption_path(root, "2_cat/img0.png", ".caption"), "a, b")
    assert (root / "2_cat" / "img0.caption").read_text() == "a, b"
    with pytest.raises(ce.CaptionEditError, match="extension"):
        ce.caption_path(root, "2_cat/img0.png", ".py")


def test_bulk_add_and_remove(base):
    root = ce.dataset_root(base, "ds")
    files = ["2_cat/img0.png", "2_cat/img1.png", "2_cat/img2.png"]
    changed = ce.bulk_edit(root, files, ["zyx trigger"], ["Red Background", "smile"])
    assert changed == files
    assert (root / "2_cat" / "img0.txt").read_text() == "cat, solo, zyx trigger"
    assert (root / "2_cat" / "img1.txt").read_bytes() == ce.BOM + b"cat, green background, zyx trigger"
    assert (root / "2_cat" / "img2.txt").read_text() == "zyx trigger"
    assert ce.bulk_edit(root, files, ["zyx_trigger"], []) == []   # already there in another spelling
    assert ce.listing(root)["frequency"]["zyx trigger"] == 3


def test_a_link_nested_in_a_dataset_does_not_open_another_folder(base, tmp_path):
    """ds/linkdir -> a folder outside: named as the dataset, it is refused (nothing listed, served or written)."""
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    Image.new("RGB", (8, 8)).save(outside / "x.png")
    (base / "ds" / "linkdir").symlink_to(outside, target_is_directory=True)
    with pytest.raises(ce.CaptionEditError, match="link that leaves its folder"):
        ce.dataset_root(base, "ds/linkdir")
    assert not (outside / "x.tags").exists() and not (outside / "x.txt").exists()


def test_bulk_edit_is_all_or_nothing(base):
    """A caption that cannot be read, listed after a good one: nothing is rewritten."""
    root = ce.dataset_root(base, "ds")
    good = root / "2_cat" / "img0.txt"
    before = good.read_bytes()
    (root / "2_cat" / "img2.txt").write_bytes(b"\xff\xfe not utf-8")
    with pytest.raises(ce.CaptionEditError, match="not UTF-8"):
        ce.bulk_edit(root, ["2_cat/img0.png", "2_cat/img2.png"], ["added"], [], ".txt")
    assert good.read_bytes() == before


@pytest.mark.parametrize("body,key,limit", [({"files": "a.png"}, "files", 10), ({"files": [1]}, "files", 10),
                                            ({"files": ["a\x00.png"]}, "files", 10),
                                            ({"files": ["a.png"] * 3 + ["b.png"] * 9 + list("cdefghijklm")}, "files", 10)])
def test_request_lists_are_typed_deduplicated_and_capped(body, key, limit):
    with pytest.raises(ce.CaptionEditError):
        ce.list_field(body, key, limit)


def test_request_fields_refuse_non_strings_and_nul():
    assert ce.list_field({"files": ["a.png", "a.png", "b.png"]}, "files", 2) == ["a.png", "b.png"]
    for bad in ({"caption": {"x": 1}}, {"caption": "a\x00b"}, {"caption": 5}):
        with pytest.raises(ce.CaptionEditError):
            ce.text_field(bad, "caption")
