"""Tiny real ONNX models for the bench tests (built with onnx.helper, run by the real runtimes)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def embedder(path: Path, size: int = 16, dim: int = 32, classes: int = 10, batch: int | str = "batch", seed: int = 0) -> Path:
    """input [B,3,size,size] -> Flatten -> MatMul -> Relu -> embedding [B,dim]; -> MatMul -> logits [B,classes]."""
    rng = np.random.default_rng(seed)
    w = numpy_helper.from_array((rng.standard_normal((3 * size * size, dim)) / np.sqrt(3 * size * size)).astype(np.float32), "w")
    head = numpy_helper.from_array(rng.standard_normal((dim, classes)).astype(np.float32), "head")
    nodes = [
        helper.make_node("Flatten", ["input"], ["flat"], axis=1),
        helper.make_node("MatMul", ["flat", "w"], ["proj"]),
        helper.make_node("Relu", ["proj"], ["embedding"]),
        helper.make_node("MatMul", ["embedding", "head"], ["logits"]),
    ]
    graph = helper.make_graph(
        nodes, "embedder",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [batch, 3, size, size])],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, [batch, dim]),
         helper.make_tensor_value_info("logits", TensorProto.FLOAT, [batch, classes])],
        [w, head],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path
