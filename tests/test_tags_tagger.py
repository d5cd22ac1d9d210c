"""The tagger's pipeline through the real onnxruntime with tiny WD14-shaped models built here: input size read
from the model, bounded decoding that an interrupt stops, fixed-batch models, mismatched CSVs, session reuse,
provider reporting, preprocessing, thresholds and caption modes."""
import threading

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from PIL import Image

from kiln.core.tags import tagger
from kiln.core.tags.labels import Labels
from kiln.core.tags.tagger import (TagSettings, input_size, merge_caption, postprocess, preprocess,
                                        provider_line, session_for, tag_images, write_captions)
from tiny_tagger import TAGS, write_tiny_tagger


@pytest.fixture(scope="module")
def tiny32(tmp_path_factory):
    model, csv = write_tiny_tagger(tmp_path_factory.mktemp("t32"), size=32)
    return model, Labels.from_csv(csv)


class CountingImage:
    """An in-memory image that counts how often the tagger decodes it (tag_images takes PIL-like items)."""
    decoded = 0
    lock = threading.Lock()

    def __init__(self, seed):
        self.img = Image.fromarray(np.random.default_rng(seed).integers(0, 255, (40, 56, 3), dtype=np.uint8))

    def convert(self, mode):
        with CountingImage.lock:
            CountingImage.decoded += 1
        return self.img.convert(mode)


def test_input_size_comes_from_the_model(tiny32, tmp_path):
    model, labels = tiny32
    session, _ = session_for(model)
    assert input_size(session) == 32
    p = tmp_path / "a.png"
    Image.new("RGB", (90, 50), (10, 200, 30)).save(p)
    (res,) = tag_images([p], model, labels, TagSettings(general_threshold=0.0, character_threshold=0.0))
    assert res.path == p and len(res.tags) == sum(1 for _, c in TAGS if c in (0, 4))


def test_interrupt_stops_decoding_and_memory_stays_bounded(tiny32):
    model, labels = tiny32
    CountingImage.decoded = 0
    items = [CountingImage(i) for i in range(200)]
    seen = []

    def progress(n):
        seen.append(n)
        if sum(seen) >= 8:
            raise KeyboardInterrupt("interrupted by the user")
    with pytest.raises(KeyboardInterrupt):
        tag_images(items, model, labels, TagSettings(), batch_size=4, workers=2, progress=progress)
    # 8 images tagged; the feeder holds at most batch*2 + workers more (+1 being handed over) - not 200.
    assert 8 <= CountingImage.decoded <= 8 + 4 * 2 + 2 + 2 + 4
    assert not [t for t in threading.enumerate() if t.name.startswith("kiln-tag")]


def test_fixed_batch_models_get_exactly_their_batch(tiny32, tmp_path):
    model, labels = tiny32
    m = onnx.load(str(model))
    m.graph.input[0].type.tensor_type.shape.dim[0].dim_value = 4
    m.graph.output[0].type.tensor_type.shape.dim[0].dim_value = 4
    fixed = tmp_path / "fixed.onnx"
    onnx.save(m, str(fixed))
    items = [CountingImage(i).img for i in range(6)]   # 4 + a padded batch of 2
    s = TagSettings(general_threshold=0.2, character_threshold=0.2)
    got = tag_images(items, fixed, labels, s, batch_size=3)
    want = tag_images(items, model, labels, s, batch_size=1)
    assert [r.caption for r in got] == [r.caption for r in want] and len(got) == 6


def test_a_tag_list_that_does_not_fit_the_model_is_named(tiny32, tmp_path):
    model, _ = tiny32
    short = tmp_path / "short.csv"
    short.write_text("tag_id,name,category,count\n0,solo,0,1\n")
    with pytest.raises(ValueError, match="scores 15 tags but its tag list has 1"):
        tag_images([CountingImage(0).img], model, Labels.from_csv(short), TagSettings())


def test_nchw_models_are_refused_clearly(tmp_path):
    graph = helper.make_graph(
        [helper.make_node("GlobalAveragePool", ["x"], ["p"]), helper.make_node("Flatten", ["p"], ["f"]),
         helper.make_node("Gemm", ["f", "w"], ["l"]), helper.make_node("Sigmoid", ["l"], ["y"])], "nchw",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3, 32, 32])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 2])],
        [numpy_helper.from_array(np.ones((3, 2), np.float32), "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    path = tmp_path / "nchw.onnx"
    onnx.save(model, str(path))
    with pytest.raises(ValueError, match="not NHWC"):
        input_size(session_for(path)[0])


def test_session_is_rebuilt_when_the_model_file_changes(tmp_path):
    model, _ = write_tiny_tagger(tmp_path, size=32, seed=1)
    first, _ = session_for(model)
    assert session_for(model)[0] is first
    write_tiny_tagger(tmp_path, size=32, seed=2)
    import os
    st = model.stat()
    os.utime(model, ns=(st.st_atime_ns, st.st_mtime_ns + 10_000_000))
    second, _ = session_for(model)
    assert second is not first
    assert len([k for k in tagger._SESSIONS if k[0] == str(model)]) == 1   # the stale session is dropped


def test_a_cuda_provider_that_failed_to_load_is_said():
    line = provider_line(["CUDAExecutionProvider", "CPUExecutionProvider"], "tagger runs on CUDAExecutionProvider",
                         ["CPUExecutionProvider"])
    assert line.startswith("tagger runs on CPUExecutionProvider") and "failed to load" in line
    ok = provider_line(["CUDAExecutionProvider", "CPUExecutionProvider"], "tagger runs on CUDAExecutionProvider",
                       ["CUDAExecutionProvider", "CPUExecutionProvider"])
    assert ok == "tagger runs on CUDAExecutionProvider"


def test_preprocess_matches_padding_first_then_resizing():
    """SmilingWolf pads to a white square and resizes that; Kiln resizes the image and pads: same picture."""
    rng = np.random.default_rng(0)
    img = Image.fromarray(rng.integers(0, 255, (6, 4, 3), dtype=np.uint8)).resize((600, 900), Image.BILINEAR)
    ours = preprocess(img, 64)
    square = Image.new("RGB", (900, 900), (255, 255, 255))
    square.paste(img, (150, 0))
    ref = np.asarray(square.resize((64, 64), Image.BICUBIC), dtype=np.float32)[:, :, ::-1]
    assert ours.shape == (64, 64, 3) and ours.dtype == np.float32
    assert np.abs(ours - ref)[:, 12:52].mean() < 3.0        # the image area (BGR both)
    assert (ours[:, :10] == 255).all() and (ours[:, 54:] == 255).all()   # white bars left and right


def test_mcut_thresholds_and_character_floor():
    labels = Labels(("1girl", "solo", "smile", "red_dress", "miku", "rin"), (0, 0, 0, 0, 4, 4))
    mcut = TagSettings(general_mcut=True, character_mcut=True)
    probs = np.array([0.95, 0.9, 0.88, 0.3, 0.12, 0.02], np.float32)   # a clear gap after three general tags
    assert [t for t, _ in postprocess(probs, labels, mcut)] == ["1girl", "solo", "smile"]   # miku: MCut 0.07 < floor 0.15
    probs[4] = 0.2
    assert [t for t, _ in postprocess(probs, labels, mcut)][0] == "miku"
    assert "miku" not in [t for t, _ in postprocess(probs, labels, TagSettings())]   # fixed 0.85 without MCut


def test_caption_modes_and_what_the_graph_gets(tmp_path):
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    (tmp_path / "a.txt").write_text("old tag, red_dress")
    final, written = write_captions({a: "red dress, smile", b: "smile"}, "append")
    assert final[a] == "old tag, red_dress, smile" and final[b] == "smile" and written == 2
    final, written = write_captions({a: "new", b: "smile"}, "keep")
    assert final == {a: "old tag, red_dress, smile", b: "smile"} and written == 0
    final, written = write_captions({a: "fresh", b: "smile"}, "overwrite")
    assert (tmp_path / "a.txt").read_text() == "fresh" and written == 1   # b's file already held it
    with pytest.raises(ValueError, match="caption mode"):
        merge_caption(None, "x", "replace")
