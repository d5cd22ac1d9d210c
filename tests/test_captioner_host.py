"""The captioner node through the host, with tiny random models of every supported transformers family
saved as real model folders in the host's models/LLM: captions are written beside the images, the trigger
comes first, a batched run equals one image at a time, tags combine, interrupt stops the run."""
import shutil

import pytest
import torch

from tiny_vlm import FAMILIES, write_tiny_vlm


@pytest.fixture(scope="module")
def llm_dir(host, tmp_path_factory):
    import folder_paths
    from kiln.nodes.captioning import _model_dirs
    _model_dirs()   # registers the LLM folder key
    d = tmp_path_factory.mktemp("llm")
    folder_paths.add_model_folder_path("LLM", str(d), is_default=True)
    return d


@pytest.fixture
def images(tiny_assets, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(tiny_assets.dataset_dir, data)
    return data


@pytest.mark.parametrize("family", FAMILIES)
def test_every_family_captions_a_folder_batched_as_one_by_one(family, llm_dir, images):
    from kiln.nodes.captioning import KilnCaptioner
    name = f"tiny-{family}"
    write_tiny_vlm(llm_dir / name, family)
    assert name in KilnCaptioner.INPUT_TYPES()["required"]["model"][1]["options"]
    one = KilnCaptioner.execute(name, str(images), "short", 6, "", "none", batch_size=1)[0]
    batched = KilnCaptioner.execute(name, str(images), "short", 6, "zyx", "overwrite", batch_size=3)[0]
    lines = batched.splitlines()
    assert len(lines) == len(one.splitlines()) >= 4
    # the same caption batched as alone, behind the trigger
    assert ["zyx, " + l.split(": ", 1)[1] if l.split(": ", 1)[1] else "zyx" for l in one.splitlines()] == \
        [l.split(": ", 1)[1] for l in lines]
    for line in lines:
        file_name, caption = line.split(": ", 1)
        written = next(images.rglob(file_name)).with_suffix(".txt").read_text(encoding="utf-8")
        assert written == caption and written.startswith("zyx")


def test_dataset_in_tags_combined_and_dataset_out(llm_dir, images):
    from kiln.core.data import DatasetConfig, load_dataset
    from kiln.nodes.captioning import KilnCaptioner
    write_tiny_vlm(llm_dir / "tiny-combine", "qwen2_vl")
    ds = load_dataset(DatasetConfig(path=str(images), resolution=64, min_bucket_reso=64))
    tagged = ds.with_captions({e.path: "red_dress, zyx, 1girl, red dress" for e in ds.images})
    with torch.inference_mode():
        text, out = KilnCaptioner.execute("tiny-combine", "", "training", 4, "zyx", "none", dataset=tagged,
                                            combine="tags first").args
    assert len(out.images) == len(ds.images)
    for e in out.images:
        assert e.caption.startswith("zyx, red_dress, 1girl")   # trigger once, tags deduplicated, then caption
        assert not e.path.with_suffix(".txt").read_text().startswith("zyx")   # mode none wrote nothing
    with pytest.raises(ValueError, match="combine needs tags"):
        KilnCaptioner.execute("tiny-combine", str(images), "short", 4, "", "none", combine="caption first")


def test_interrupt_stops_generation(llm_dir, images, host, monkeypatch):
    from kiln.nodes import captioning
    write_tiny_vlm(llm_dir / "tiny-interrupt", "llava")
    before = {p: p.read_text() for p in images.rglob("*.txt")}
    calls = []

    def interrupted():
        calls.append(1)
        raise host.interrupt_exception_type()()
    monkeypatch.setattr(captioning.host, "throw_if_interrupted", interrupted)
    with pytest.raises(host.interrupt_exception_type()):
        captioning.KilnCaptioner.execute("tiny-interrupt", str(images), "short", 50, "", "overwrite")
    assert len(calls) == 1   # stopped at the first token, not after the batch
    assert {p: p.read_text() for p in images.rglob("*.txt")} == before   # nothing written


def test_offline_missing_model_says_where(llm_dir, images):
    from kiln.nodes.captioning import KilnCaptioner
    with pytest.raises(FileNotFoundError, match=r"Qwen/Qwen3-VL-4B-Instruct.*Qwen3-VL-4B-Instruct"):
        KilnCaptioner.execute("Qwen3-VL-4B-Instruct", str(images), "short", 4, "", "none", offline=True)
