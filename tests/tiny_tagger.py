"""A tiny WD14-shaped ONNX tagger (NHWC float input of a fixed size, [N, T] sigmoid output) and its tag CSV,
built locally so the real onnxruntime path runs in tests and benchmarks."""
from pathlib import Path

import numpy as np

TAGS = [("general", 9), ("sensitive", 9), ("1girl", 0), ("solo", 0), ("red_dress", 0), ("shirt", 0),
        ("white_shirt", 0), ("blue_eyes", 0), ("long_hair", 0), ("ponytail", 0), ("^_^", 0), ("smile", 0),
        ("hatsune_miku", 4), ("vocaloid", 3), ("watermark", 5)]


def write_conv_tagger(folder: Path, name: str, size: int, channels: list[int], strides: list[int],
                      conv_std=None, seed: int = 0) -> tuple[Path, Path]:
    """A stack of 3x3 conv + ReLU layers, global pooling and a sigmoid head, saved with its tag CSV.
    ``conv_std``: the init std of every conv (None: He init per layer)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    rng = np.random.default_rng(seed)
    nodes = [helper.make_node("Mul", ["input_1:0", "inv255"], ["x0"]),
             helper.make_node("Transpose", ["x0"], ["h0"], perm=[0, 3, 1, 2])]
    inits = [numpy_helper.from_array(np.array(1 / 255.0, dtype=np.float32), "inv255")]
    for i, stride in enumerate(strides):
        std = conv_std if conv_std is not None else (2.0 / (channels[i] * 9)) ** 0.5
        w = rng.normal(0, std, (channels[i + 1], channels[i], 3, 3)).astype(np.float32)
        inits.append(numpy_helper.from_array(w, f"w{i}"))
        nodes += [helper.make_node("Conv", [f"h{i}", f"w{i}"], [f"c{i}"], kernel_shape=[3, 3], pads=[1, 1, 1, 1],
                                   strides=[stride, stride]),
                  helper.make_node("Relu", [f"c{i}"], [f"h{i + 1}"])]
    inits += [numpy_helper.from_array(rng.normal(0, 1.0, (channels[-1], len(TAGS))).astype(np.float32), "wf"),
              numpy_helper.from_array(rng.normal(0, 0.5, (len(TAGS),)).astype(np.float32), "bf")]
    nodes += [helper.make_node("GlobalAveragePool", [f"h{len(strides)}"], ["pooled"]),
              helper.make_node("Flatten", ["pooled"], ["flat"]),
              helper.make_node("Gemm", ["flat", "wf", "bf"], ["logits"]),
              helper.make_node("Sigmoid", ["logits"], ["predictions_sigmoid"])]
    graph = helper.make_graph(
        nodes, name, [helper.make_tensor_value_info("input_1:0", TensorProto.FLOAT, ["batch", size, size, 3])],
        [helper.make_tensor_value_info("predictions_sigmoid", TensorProto.FLOAT, ["batch", len(TAGS)])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    folder.mkdir(parents=True, exist_ok=True)
    onnx_path, csv_path = folder / f"{name}.onnx", folder / f"{name}.csv"
    onnx.save(model, str(onnx_path))
    csv_path.write_text("tag_id,name,category,count\n" +
                        "".join(f"{i},{t},{c},{100 - i}\n" for i, (t, c) in enumerate(TAGS)))
    return onnx_path, csv_path


def write_tiny_tagger(folder: Path, name: str = "tiny-tagger", size: int = 64, width: int = 16,
                      seed: int = 0) -> tuple[Path, Path]:
    """Two strided convs: cheap enough for every test."""
    return write_conv_tagger(folder, name, size, [3, width, width * 2], [2, 2], conv_std=0.2, seed=seed)


CATEGORY_WORDS = {0: "general", 3: "copyright", 4: "character", 5: "meta", 9: "rating"}
NCHW_FORMATS = ("pixai", "cl_tagger", "camie")


def write_nchw_tagger(folder: Path, fmt: str, name: str, size: int = 32, bias=None, seed: int = 0) -> Path:
    """A tiny NCHW tagger with the I/O of ``fmt`` (pixai: outputs logits, prediction = sigmoid, embedding;
    cl_tagger: one logits output; camie: initial_predictions and refined_predictions, logits) and that
    format's tag file, in the layout its users keep it: pixai flat <name>.onnx + <name>.csv, cl_tagger a
    <name>/ folder with model.onnx + tag_mapping.json, Camie flat <name>.onnx + <name>-metadata.json.
    ``bias``: when given, the head ignores the image and scores exactly these logits (one per tag).
    Returns the model path."""
    import json
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    rng = np.random.default_rng(seed)
    width, n = 8, len(TAGS)
    w_head = np.zeros((width, n), np.float32) if bias is not None else rng.normal(0, 1.0, (width, n)).astype(np.float32)
    b_head = np.asarray(bias if bias is not None else rng.normal(0, 0.5, n), np.float32)
    inits = [numpy_helper.from_array(rng.normal(0, 0.3, (width, 3, 3, 3)).astype(np.float32), "w0"),
             numpy_helper.from_array(w_head, "wf"), numpy_helper.from_array(b_head, "bf"),
             numpy_helper.from_array(np.array(-1.0, np.float32), "minus")]
    nodes = [helper.make_node("Conv", ["input", "w0"], ["c0"], kernel_shape=[3, 3], pads=[1, 1, 1, 1], strides=[2, 2]),
             helper.make_node("Relu", ["c0"], ["h0"]),
             helper.make_node("GlobalAveragePool", ["h0"], ["pooled"]),
             helper.make_node("Flatten", ["pooled"], ["embedding"]),
             helper.make_node("Gemm", ["embedding", "wf", "bf"], ["logits"])]
    out = lambda nm, k: helper.make_tensor_value_info(nm, TensorProto.FLOAT, ["batch", k])  # noqa: E731
    if fmt == "pixai":
        nodes.append(helper.make_node("Sigmoid", ["logits"], ["prediction"]))
        outputs = [out("embedding", width), out("logits", n), out("prediction", n)]
    elif fmt == "cl_tagger":
        nodes.append(helper.make_node("Identity", ["logits"], ["output"]))
        outputs = [out("output", n)]
    elif fmt == "camie":
        # the initial head scores the opposite, so reading the wrong output shows
        nodes += [helper.make_node("Mul", ["logits", "minus"], ["initial_predictions"]),
                  helper.make_node("Identity", ["logits"], ["refined_predictions"])]
        outputs = [out("initial_predictions", n), out("refined_predictions", n)]
    else:
        raise ValueError(fmt)
    graph = helper.make_graph(nodes, name, [helper.make_tensor_value_info("input", TensorProto.FLOAT,
                                                                          ["batch", 3, size, size])], outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    folder.mkdir(parents=True, exist_ok=True)
    if fmt == "pixai":
        path = folder / f"{name}.onnx"
        (folder / f"{name}.csv").write_text("tag_id,name,category,count\n" +
                                            "".join(f"{i},{t},{c},{100 - i}\n" for i, (t, c) in enumerate(TAGS)))
    elif fmt == "cl_tagger":
        path = folder / name / "model.onnx"
        path.parent.mkdir(exist_ok=True)
        mapping = {str(i): {"tag": t, "category": CATEGORY_WORDS[c].capitalize()} for i, (t, c) in enumerate(TAGS)}
        (folder / name / "tag_mapping.json").write_text(json.dumps(mapping))
    else:
        path = folder / f"{name}.onnx"
        meta = {"dataset_info": {"tag_mapping": {"idx_to_tag": {str(i): t for i, (t, _) in enumerate(TAGS)},
                                                 "tag_to_category": {t: CATEGORY_WORDS[c] for t, c in TAGS}},
                                 "total_tags": n}}
        (folder / f"{name}-metadata.json").write_text(json.dumps(meta))
    onnx.save(model, str(path))
    return path
