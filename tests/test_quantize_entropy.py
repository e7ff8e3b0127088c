"""quantize.method=entropy chooses clipped activation ranges, not MinMax's full ones."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from edgedistill.config import QuantizeConfig
from edgedistill.quantize.ort_static import quantize_ort_static


def input_scale(path) -> float:
    inits = {i.name: numpy_helper.to_array(i) for i in onnx.load(str(path)).graph.initializer}
    return float(inits["input_scale"])


def matmul_with_outliers(tmp_path):
    """(one-MatMul model, a calibration batch with two outliers among 4096 values: MinMax spends the int8 range on them)"""
    rng = np.random.default_rng(0)
    weight = numpy_helper.from_array(rng.standard_normal((32, 8)).astype(np.float32), "w")
    graph = helper.make_graph([helper.make_node("MatMul", ["input", "w"], ["embedding"], name="fc")], "g",
                              [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 16, 32])],
                              [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, [1, 16, 8])], [weight])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), tmp_path / "m.onnx")
    batch = rng.standard_normal((8, 16, 32)).astype(np.float32)
    batch[0, 0, :2] = 40.0
    return tmp_path / "m.onnx", batch


def test_entropy_clips_rare_outliers_that_minmax_keeps(tmp_path):
    model, batch = matmul_with_outliers(tmp_path)
    scales = {}
    for method in ("minmax", "entropy"):
        quantize_ort_static(model, tmp_path / f"{method}.onnx", batch, QuantizeConfig(method=method))
        scales[method] = input_scale(tmp_path / f"{method}.onnx")
    assert scales["minmax"] > 40.0 / 255  # the full range, outliers included
    assert scales["entropy"] < 0.5 * scales["minmax"]  # a clipped range
