"""Kiln Tagger and Tag Filter through the host with the newer tagger formats: a cl_tagger folder and a Camie
model in the models folder are listed, tag a dataset, and their tag files give the filter its categories."""
import shutil

import torch

from tiny_tagger import write_nchw_tagger


def test_cl_tagger_and_camie_through_the_nodes(host, tiny_assets, tmp_path):
    import folder_paths
    from kiln.core.data import DatasetConfig, load_dataset
    from kiln.nodes.tagging import KilnTagFilter, KilnTagger
    models = tmp_path / "wd14"
    folder_paths.add_model_folder_path("wd14_tagger", str(models), is_default=True)
    write_nchw_tagger(models, "cl_tagger", "my-cl", size=32)
    write_nchw_tagger(models, "camie", "my-camie", size=32, seed=1)
    listed = KilnTagger.INPUT_TYPES()["required"]["model"][1]["options"]
    assert {"my-cl", "my-camie", "camie-tagger-v2", "pixai-tagger-v0.9"} <= set(listed)
    data = tmp_path / "data"
    shutil.copytree(tiny_assets.dataset_dir, data)
    ds = load_dataset(DatasetConfig(path=str(data), resolution=64, min_bucket_reso=64))
    for name in ("my-cl", "my-camie"):
        with torch.inference_mode():
            text, tagged = KilnTagger.execute(name, "", 0.0, 0.0, "overwrite", dataset=ds).args
        assert len(text.splitlines()) == len(ds)
        first = tagged.images[0]
        assert "hatsune miku" in first.caption and first.caption == first.path.with_suffix(".txt").read_text()
        res = KilnTagFilter.execute("", False, False, "", "", False, 0, dataset=tagged,
                                     remove_categories="character, copyright", tag_model=name).args
        assert all("hatsune miku" not in e.caption and "vocaloid" not in e.caption and "1girl" in e.caption
                   for e in res[1].images)
