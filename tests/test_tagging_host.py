"""The tagging nodes through the host: the tagger registers the models folder the most used tagger uses,
finds a local model there, writes captions; the filter works on a dataset."""
import shutil

import pytest
import torch

from tiny_tagger import write_tiny_tagger


def test_tagger_and_filter_nodes_on_a_dataset(host, tiny_assets, tmp_path):
    import folder_paths
    from kiln.core.data import DatasetConfig, load_dataset
    from kiln.nodes.tagging import KilnTagFilter, KilnTagger
    models_dir = tmp_path / "wd14"
    folder_paths.add_model_folder_path("wd14_tagger", str(models_dir), is_default=True)
    write_tiny_tagger(models_dir, name="my-local-tagger")
    assert "my-local-tagger" in KilnTagger.INPUT_TYPES()["required"]["model"][1]["options"]
    data = tmp_path / "data"
    shutil.copytree(tiny_assets.dataset_dir, data)
    ds = load_dataset(DatasetConfig(path=str(data), resolution=64, min_bucket_reso=64))
    with torch.inference_mode():
        # A low general threshold: the tiny tagger's weak tags (red dress among them) make it into the captions.
        out = KilnTagger.execute("my-local-tagger", "", 0.05, 0.5, "overwrite", dataset=ds).args
    text, tagged = out
    assert len(text.splitlines()) == len(ds)
    first = tagged.images[0]
    assert first.caption == first.path.with_suffix(".txt").read_text()
    def tags(caption):
        return [t.strip() for t in caption.split(",")]
    # The filter's removal and replacement have something to act on: both tags are in the tagger's output.
    had_solo = [i for i, e in enumerate(tagged.images) if "solo" in tags(e.caption)]
    had_dress = [i for i, e in enumerate(tagged.images) if {"red_dress", "red dress"} & set(tags(e.caption))]
    assert had_solo and had_dress, [e.caption for e in tagged.images]
    with torch.inference_mode():
        res = KilnTagFilter.execute("solo", True, True, "zyxshapes", "red_dress=zyxdress", True, 0,
                                     dataset=tagged).args
    filtered = res[1].images
    assert all(e.caption.startswith("zyxshapes") and "solo" not in tags(e.caption) for e in filtered)
    assert all("zyxdress" in tags(filtered[i].caption) for i in had_dress)
    assert not any("red_dress" in tags(e.caption) or "red dress" in tags(e.caption) for e in filtered)
    assert res[3].shape[0] == 1 and res[3].shape[-1] == 3
    with pytest.raises(Exception, match="wd-eva02-large-tagger-v3"):
        KilnTagger.execute("wd-eva02-large-tagger-v3", str(data), 0.35, 0.85, "none", offline=True)
