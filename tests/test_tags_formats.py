"""The taggers beside WD14 (pixai, cl_tagger, Camie), from tiny ONNX models with each one's inputs, outputs
and tag file: found in the folder layouts their users keep, the format read from the model, each one's
preprocessing, the right output and activation, categories from the tag file."""
import json

import numpy as np
import pytest
from PIL import Image

from kiln.core.tags.formats import (CAMIE, CL, PIXAI, WD14, format_input_size, preprocess_nchw, read_format,
                                         to_probabilities)
from kiln.core.tags.hub import TaggerModelMissing, ensure_model, find_local, local_names
from kiln.core.tags.labels import CATEGORY_IDS, Labels
from kiln.core.tags.tagger import TagSettings, session_for, tag_images
from tiny_tagger import NCHW_FORMATS, TAGS, write_nchw_tagger, write_tiny_tagger

EXPECTED = {"pixai": PIXAI, "cl_tagger": CL, "camie": CAMIE}


@pytest.mark.parametrize("fmt", NCHW_FORMATS)
def test_each_format_is_found_read_and_scored_from_the_right_output(fmt, tmp_path):
    bias = np.linspace(-3, 3, len(TAGS)).astype(np.float32)
    write_nchw_tagger(tmp_path, fmt, f"tiny-{fmt}", size=32, bias=bias)
    write_tiny_tagger(tmp_path, name="tiny-wd14", size=32)
    assert local_names([tmp_path]) == sorted(["tiny-wd14", f"tiny-{fmt}"])
    files = find_local(f"tiny-{fmt}", [tmp_path])
    labels = Labels.from_file(files.tags)
    assert labels.names == tuple(t for t, _ in TAGS) and labels.categories == tuple(c for _, c in TAGS)
    session = session_for(files.model)[0]
    assert read_format(session, labels.kind, files.model.name).name == EXPECTED[fmt].name
    assert format_input_size(session, EXPECTED[fmt]) == 32
    wd = find_local("tiny-wd14", [tmp_path])
    assert read_format(session_for(wd.model)[0], Labels.from_file(wd.tags).kind) == WD14
    # The head ignores the image and scores the bias: each tag's confidence is sigmoid(bias), read from
    # pixai's 'prediction' (not sigmoided twice) and Camie's refined head (not the initial one).
    (res,) = tag_images([Image.new("RGB", (40, 30), "red")], files.model, labels,
                        TagSettings(0.0, 0.0, include_rating=True, replace_underscores=False))
    got = dict(res.tags)
    want = {t: 1 / (1 + np.exp(-b)) for (t, c), b in zip(TAGS, bias) if c in (0, 4)}
    rating = max(((t, 1 / (1 + np.exp(-b))) for (t, c), b in zip(TAGS, bias) if c == 9), key=lambda x: x[1])
    want[rating[0]] = rating[1]
    assert set(got) == set(want)
    assert all(abs(got[t] - want[t]) < 1e-5 for t in want)


def test_preprocessing_of_each_format():
    red = Image.new("RGB", (20, 10), (255, 0, 0))
    for fmt in (PIXAI, CL):
        arr = preprocess_nchw(red, 16, fmt)
        assert arr.shape == (3, 16, 16) and arr.dtype == np.float32
        assert np.allclose(arr[:, 8, 8], [1.0, -1.0, -1.0])   # RGB order, (x - 0.5) / 0.5
        assert np.allclose(arr[:, 0, 8], [1.0, 1.0, 1.0])     # white padding above the wide image
    arr = preprocess_nchw(red, 16, CAMIE)
    assert np.allclose(arr[:, 8, 8], [(1 - 0.485) / 0.229, (0 - 0.456) / 0.224, (0 - 0.406) / 0.225], atol=1e-5)
    assert np.abs(arr[:, 0, 8]).max() < 0.02    # padded with the mean colour: about zero after normalising
    assert np.allclose(to_probabilities(np.array([0.0, 100.0]), CL), [0.5, 1.0])
    assert np.array_equal(to_probabilities(np.array([0.3]), PIXAI), [0.3])


def test_tag_file_errors_name_the_file(tmp_path):
    bad = tmp_path / "x_tag_mapping.json"
    bad.write_text(json.dumps({"0": {"tag": "a", "category": "General"}, "2": {"tag": "b", "category": "General"}}))
    with pytest.raises(ValueError, match="x_tag_mapping.json.*indices"):
        Labels.from_file(bad)
    bad.write_text("[1, 2]")
    with pytest.raises(ValueError, match="x_tag_mapping.json.*not a tagger tag file"):
        Labels.from_file(bad)
    cats = Labels.from_file(_cl_mapping(tmp_path, {"0": {"tag": "1990s_(style)", "category": "Year"},
                                                   "1": {"tag": "masterpiece", "category": "Quality"},
                                                   "2": {"tag": "x", "category": "Artist"}}))
    assert cats.categories == (CATEGORY_IDS["meta"], CATEGORY_IDS["meta"], CATEGORY_IDS["artist"])


def _cl_mapping(tmp_path, mapping):
    path = tmp_path / "tag_mapping.json"
    path.write_text(json.dumps(mapping))
    return path


def test_nchw_model_with_an_unknown_output_is_refused_with_the_reason(tmp_path):
    path = write_nchw_tagger(tmp_path, "cl_tagger", "nameless", size=32)
    csv = tmp_path / "nameless" / "selected_tags.csv"   # a CSV instead of cl_tagger's tag_mapping.json
    csv.write_text("tag_id,name,category,count\n" + "".join(f"{i},{t},{c},1\n" for i, (t, c) in enumerate(TAGS)))
    with pytest.raises(ValueError, match="cl_tagger needs its tag_mapping.json"):
        read_format(session_for(path)[0], Labels.from_file(csv).kind, "nameless")


def test_new_hub_taggers_offline_say_where_to_put_them(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(TaggerModelMissing) as err:
        ensure_model("camie-tagger-v2", [tmp_path / "wd14_tagger"], cache_dir=str(tmp_path / "hub"))
    msg = str(err.value)
    assert "https://huggingface.co/Camais03/camie-tagger-v2" in msg and "camie-tagger-v2-metadata.json" in msg
    assert str(tmp_path / "wd14_tagger" / "camie-tagger-v2.json") in msg
    with pytest.raises(TaggerModelMissing, match="cl_tagger_1_02/tag_mapping.json from https://huggingface.co/cella110n/cl_tagger"):
        ensure_model("cl_tagger_1_02", [tmp_path / "wd14_tagger"], cache_dir=str(tmp_path / "hub"))
