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
