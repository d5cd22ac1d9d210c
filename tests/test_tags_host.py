"""The tagging nodes through the real host executor: tag a folder (a kept caption stays), prune the tagger's
text by CSV category, count the result; and the filter's guard for a dataset without map_captions."""
import shutil

import numpy as np
import pytest
from PIL import Image

from tiny_tagger import write_tiny_tagger


@pytest.fixture
def tag_folder(host, tmp_path):
    import folder_paths
    models = tmp_path / "wd14"
    folder_paths.add_model_folder_path("wd14_tagger", str(models), is_default=True)
    write_tiny_tagger(models, name="host-tiny-tagger", size=32)
    root = host.input_dir() / "kiln_test_tags"
    shutil.rmtree(root, ignore_errors=True)
    (root / "sub").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(5):
        Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(root / ("sub" if i % 2 else "") / f"{i}.png")
    (root / "0.txt").write_text("hand written, keep me")
    yield root
    shutil.rmtree(root, ignore_errors=True)


def test_tag_filter_and_count_through_the_executor(host, tag_folder):
    from cli import runner
    prompt = {
        "1": {"class_type": "KilnTagger", "inputs": {
            "model": "host-tiny-tagger", "folder": "kiln_test_tags", "general_threshold": 0.0,
            "character_threshold": 0.0, "caption_mode": "keep", "batch_size": 2}},
        "2": {"class_type": "KilnTagFilter", "inputs": {
            "text": ["1", 0], "remove": "re:^s(olo|mile)$", "remove_metadata_tags": True, "character_preset": True,
            "trigger": "zyx", "replace": "red_dress=zyxdress", "drop_implied": True, "max_tags": 0,
            "remove_categories": "character", "tag_model": "host-tiny-tagger"}},
        "3": {"class_type": "KilnTagFrequency", "inputs": {"text": ["2", 0], "top": 10}},
        "4": {"class_type": "PreviewImage", "inputs": {"images": ["2", 3]}},
    }
    result = runner.run_prompt(prompt)
    assert result.success, result.error
    tagged = result.outputs["1"]["text"][0].splitlines()
    assert len(tagged) == 5 and tagged[0] == "0.png: hand written, keep me"   # 'keep' leaves it, and says so
    assert (tag_folder / "0.txt").read_text() == "hand written, keep me"
    fresh = (tag_folder / "sub" / "1.txt").read_text()
    assert "hatsune miku" in fresh and "red dress" in fresh and "^_^" in fresh   # no escaping, kaomoji intact
    counts = result.outputs["3"]["text"][0]
    assert counts.startswith("5 captions")
    lines = {line.split(None, 1)[1]: int(line.split()[0]) for line in counts.splitlines()[1:]}
    assert lines["zyx"] == 5 and lines["zyxdress"] == 4 and lines["white shirt"] == 4
    for gone in ("hatsune miku", "blue eyes", "long hair", "solo", "smile", "shirt", "red dress"):
        assert gone not in lines
    assert lines["ponytail"] == 4 and lines["^_^"] == 4
    report = result.outputs["2"]["text"][0]
    assert "pruned:" in report and "hatsune miku" in report.split("pruned:")[1]


def test_filter_refuses_a_dataset_without_map_captions(host):
    from kiln.nodes.tagging import KilnTagFilter
    with pytest.raises(TypeError, match="map_captions"):
        KilnTagFilter.execute("", True, False, "", "", False, 0, dataset=object())
