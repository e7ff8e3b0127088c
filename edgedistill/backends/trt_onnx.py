"""Facts about an ONNX file that the TensorRT path needs, read with the `onnx` package only.

Weights stored as external data are never loaded: only the graph is inspected.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Iterator

import numpy as np
import onnx
from onnx import numpy_helper

from ..errors import EdgedistillError

QDQ_OPS = ("QuantizeLinear", "DequantizeLinear")


def load_graph(path: Path) -> onnx.ModelProto:
    path = Path(path)
    if not path.is_file():
        raise EdgedistillError(f"ONNX file '{path}' does not exist", "run the export stage first, or pass an existing .onnx file")
    try:
        return onnx.load(str(path), load_external_data=False)
    except Exception as exc:
        raise EdgedistillError(f"'{path}' is not a readable ONNX model: {str(exc).splitlines()[0] if str(exc) else exc}", "re-export the model") from exc


def default_opset(model: onnx.ModelProto) -> int:
    for entry in model.opset_import:
        if entry.domain in ("", "ai.onnx"):
            return int(entry.version)
    return 0


def graph_inputs(model: onnx.ModelProto) -> dict[str, list[int | None]]:
    """Real inputs (not initializers) -> dims, with None for a dynamic or unknown dim."""
    initializers = {init.name for init in model.graph.initializer}
    found = {}
    for value in model.graph.input:
        if value.name in initializers:
            continue
        dims = [d.dim_value if d.HasField("dim_value") else None for d in value.type.tensor_type.shape.dim]
        found[value.name] = dims
    return found


def resolve_input(model: onnx.ModelProto, input_name: str | None) -> tuple[str, list[int | None]]:
    """(name, dims) of the image input; `None` picks the only input."""
    inputs = graph_inputs(model)
    if input_name is None and len(inputs) == 1:
        return next(iter(inputs.items()))
    if input_name in inputs:
        return input_name, inputs[input_name]
    raise EdgedistillError(
        f"the ONNX model has no input named '{input_name}' (inputs: {', '.join(inputs) or 'none'})",
        "pass the model's input name, or re-export with input_names=['input']",
    )


def iter_graphs(graph: onnx.GraphProto) -> Iterator[onnx.GraphProto]:
    """The graph and every If/Loop/Scan subgraph inside it."""
    yield graph
    for node in graph.node:
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                yield from iter_graphs(attr.g)
            elif attr.type == onnx.AttributeProto.GRAPHS:
                for sub in attr.graphs:
                    yield from iter_graphs(sub)


def iter_nodes(graph: onnx.GraphProto) -> Iterator[onnx.NodeProto]:
    for sub in iter_graphs(graph):
        yield from sub.node


def op_counts(model: onnx.ModelProto) -> Counter:
    return Counter(node.op_type for node in iter_nodes(model.graph) if node.domain in ("", "ai.onnx"))


def custom_domain_ops(model: onnx.ModelProto) -> Counter:
    return Counter(f"{node.domain}::{node.op_type}" for node in iter_nodes(model.graph) if node.domain not in ("", "ai.onnx"))


def has_qdq(model: onnx.ModelProto) -> bool:
    return any(node.op_type in QDQ_OPS for node in iter_nodes(model.graph))


def graph_constants(model: onnx.ModelProto) -> dict[str, onnx.TensorProto]:
    """Initializers and Constant-node tensors of every (sub)graph, by name."""
    found = {}
    for graph in iter_graphs(model.graph):
        found.update({init.name: init for init in graph.initializer})
        for node in graph.node:
            if node.op_type == "Constant":
                for attr in node.attribute:
                    if attr.name == "value" and attr.type == onnx.AttributeProto.TENSOR:
                        found[node.output[0]] = attr.t
    return found


def zero_point_problems(model: onnx.ModelProto) -> Counter:
    """Counts of Q/DQ zero points TensorRT rejects: 'uint8' (asymmetric activations) and 'nonzero'."""
    constants = graph_constants(model)
    problems: Counter = Counter()
    for node in iter_nodes(model.graph):
        if node.op_type not in QDQ_OPS or len(node.input) < 3 or not node.input[2]:
            continue
        tensor = constants.get(node.input[2])
        if tensor is None:
            continue
        if tensor.data_type == onnx.TensorProto.UINT8:
            problems["uint8"] += 1
        elif tensor.data_location != onnx.TensorProto.EXTERNAL and np.any(numpy_helper.to_array(tensor) != 0):
            problems["nonzero"] += 1
    return problems


def non_int8_dequantize(model: onnx.ModelProto) -> int:
    """DequantizeLinear nodes whose constant input is not int8 (e.g. ORT's int32 quantized biases):
    TensorRT's ONNX parser takes only int8 (and fp8/int4) there."""
    constants = graph_constants(model)
    allowed = {onnx.TensorProto.INT8, onnx.TensorProto.FLOAT8E4M3FN, onnx.TensorProto.INT4}
    return sum(1 for node in iter_nodes(model.graph)
               if node.op_type == "DequantizeLinear" and node.input[0] in constants and constants[node.input[0]].data_type not in allowed)


def has_float16(model: onnx.ModelProto) -> bool:
    """Whether the graph already computes in fp16 (e.g. converted by ModelOpt AutoCast)."""
    fp16 = onnx.TensorProto.FLOAT16
    if any(tensor.data_type == fp16 for tensor in graph_constants(model).values()):
        return True
    for node in iter_nodes(model.graph):
        if node.op_type == "Cast" and any(a.name == "to" and a.i == fp16 for a in node.attribute):
            return True
    return False


def external_data_files(model: onnx.ModelProto) -> set[str]:
    """Relative paths of the external weight files the model refers to."""
    files = set()
    for tensor in graph_constants(model).values():
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            for entry in tensor.external_data:
                if entry.key == "location":
                    files.add(entry.value)
    return files
