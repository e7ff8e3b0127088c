"""Does this onnxruntime run DequantizeLinear -> Softmax -> QuantizeLinear right when it fuses them into
QLinearSoftmax? The reason edgedistill puts no Q/DQ on MatMul outputs (quantize/ort_static.NO_OUTPUT_QDQ).

Prints the largest difference, in int8 steps, between the fused run (graph optimizations on) and the plain
one (off), at the small output scale calibrated attention weights get. Run it under the onnxruntime a
device has: `python benchmarks/qlinear_softmax.py`.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper

OUTPUT_SCALE = 0.000251  # a calibrated ViT attention Softmax's output scale (17 tokens)


def model() -> onnx.ModelProto:
    const = lambda name, value, kind: helper.make_tensor(name, kind, [], [value])  # noqa: E731
    nodes = [helper.make_node("DequantizeLinear", ["x", "xs", "xz"], ["xf"]), helper.make_node("Softmax", ["xf"], ["p"], axis=-1),
             helper.make_node("QuantizeLinear", ["p", "ys", "yz"], ["y"])]
    graph = helper.make_graph(nodes, "qsm", [helper.make_tensor_value_info("x", TensorProto.UINT8, [1, 17, 17])],
                              [helper.make_tensor_value_info("y", TensorProto.UINT8, [1, 17, 17])],
                              [const("xs", 0.05, TensorProto.FLOAT), const("xz", 128, TensorProto.UINT8),
                               const("ys", OUTPUT_SCALE, TensorProto.FLOAT), const("yz", 0, TensorProto.UINT8)])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def run(optimized: bool, x: np.ndarray) -> np.ndarray:
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL if optimized else ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(model().SerializeToString(), options, providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x})[0].astype(np.int32)


if __name__ == "__main__":
    x = np.random.default_rng(0).integers(0, 256, (1, 17, 17), dtype=np.uint8)
    error = int(np.abs(run(True, x) - run(False, x)).max())
    print(f"onnxruntime {ort.__version__}: fused QLinearSoftmax vs plain, output scale {OUTPUT_SCALE}: largest error {error} int8 steps")
