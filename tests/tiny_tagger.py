"""A tiny WD14-shaped ONNX tagger (NHWC float input of a fixed size, [N, T] sigmoid output) and its tag CSV,
built locally so the real onnxruntime path runs in tests and benchmarks."""
from pathlib import Path

import numpy as np

TAGS = [("general", 9), ("sensitive", 9), ("1girl", 0), ("solo", 0), ("red_dress", 0), ("shirt", 0),
        ("white_shirt", 0), ("blue_eyes", 0), ("long_hair", 0), ("ponytail", 0), ("^_^", 0), ("smile", 0),
        ("hatsune_miku", 4), ("vocaloid", 3), ("watermark", 5)]


def write_tiny_tagger(folder: Path, name: str = "tiny-tagger", size: int = 64, width: int = 16,
                      seed: int = 0) -> tuple[Path, Path]:
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    rng = np.random.default_rng(seed)
    n_tags = len(TAGS)
    w1 = rng.normal(0, 0.2, (width, 3, 3, 3)).astype(np.float32)
    w2 = rng.normal(0, 0.2, (width * 2, width, 3, 3)).astype(np.float32)
    wf = rng.normal(0, 1.0, (width * 2, n_tags)).astype(np.float32)
    bf = rng.normal(0, 0.5, (n_tags,)).astype(np.float32)
    nodes = [
        helper.make_node("Mul", ["input_1:0", "inv255"], ["scaled"]),
        helper.make_node("Transpose", ["scaled"], ["nchw"], perm=[0, 3, 1, 2]),
        helper.make_node("Conv", ["nchw", "w1"], ["c1"], kernel_shape=[3, 3], pads=[1, 1, 1, 1], strides=[2, 2]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("Conv", ["r1", "w2"], ["c2"], kernel_shape=[3, 3], pads=[1, 1, 1, 1], strides=[2, 2]),
        helper.make_node("Relu", ["c2"], ["r2"]),
        helper.make_node("GlobalAveragePool", ["r2"], ["pooled"]),
        helper.make_node("Flatten", ["pooled"], ["flat"]),
        helper.make_node("Gemm", ["flat", "wf", "bf"], ["logits"]),
        helper.make_node("Sigmoid", ["logits"], ["predictions_sigmoid"]),
    ]
    graph = helper.make_graph(
        nodes, name,
        [helper.make_tensor_value_info("input_1:0", TensorProto.FLOAT, ["batch", size, size, 3])],
        [helper.make_tensor_value_info("predictions_sigmoid", TensorProto.FLOAT, ["batch", n_tags])],
        [numpy_helper.from_array(np.array(1 / 255.0, dtype=np.float32), "inv255"),
         numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(w2, "w2"),
         numpy_helper.from_array(wf, "wf"), numpy_helper.from_array(bf, "bf")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    folder.mkdir(parents=True, exist_ok=True)
    onnx_path, csv_path = folder / f"{name}.onnx", folder / f"{name}.csv"
    onnx.save(model, str(onnx_path))
    csv_path.write_text("tag_id,name,category,count\n" +
                        "".join(f"{i},{t},{c},{100 - i}\n" for i, (t, c) in enumerate(TAGS)))
    return onnx_path, csv_path
