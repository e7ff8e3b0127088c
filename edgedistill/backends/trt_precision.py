"""Which layers stay in FP32 when the rest of the engine runs in FP16 (or INT8 + FP16).

LayerNorm's mean/variance reductions overflow or lose precision in FP16 (TensorRT warns about
exactly this for layernorm after attention), and Softmax over long token rows is sensitive too.
The same rule serves both paths: ONNX node names in `fp32_node_names` (trtexec
--layerPrecisions, the bundle) and TensorRT layers in `keep_fp32` (builder API, which gets those
names too: the ONNX parser names each layer after its node).

Below opset 17 torch exports LayerNorm as ReduceMean -> Sub -> Pow -> ReduceMean -> Add -> Sqrt
-> Div -> Mul -> Add (TensorRT 8.5 cannot parse LayerNormalization). Such a decomposition is
found by its graph structure (onnx_layernorm.py), wherever it sits: a token head
`/token_head/token_head.0/...` has no "norm" in its scope. Nodes inside a norm-named scope such
as `/blocks.0/norm1/...` are pinned as well, which also covers RMSNorm-like decompositions.
"""

from __future__ import annotations

import onnx

from .onnx_layernorm import decomposed_layernorms
from .trt_onnx import iter_nodes

NORM_OPS = frozenset({"LayerNormalization", "GroupNormalization", "InstanceNormalization", "RMSNormalization"})
SOFTMAX_OPS = frozenset({"Softmax", "LogSoftmax"})
# The float math a decomposed LayerNorm is made of (ReduceMean, Sub, Pow, Add, Sqrt, Div, Mul).
DECOMPOSED_NORM_OPS = frozenset({"ReduceMean", "Sub", "Pow", "Add", "Sqrt", "Div", "Mul", "Reciprocal", "ReduceSumSquare"})

# TensorRT layer types matching the ONNX ops above, looked up by name (NORMALIZATION is 8.6+).
TRT_KEEP_TYPES = ("NORMALIZATION", "SOFTMAX")
TRT_NORM_PART_TYPES = ("REDUCE", "ELEMENTWISE", "UNARY")


def in_norm_scope(name: str) -> bool:
    """'/blocks.0/norm1/ReduceMean' -> True: the enclosing module is a norm."""
    parts = [p for p in name.split("/") if p]
    return len(parts) >= 2 and "norm" in parts[-2].lower()


def wants_fp32_node(op_type: str, name: str) -> bool:
    return op_type in NORM_OPS or op_type in SOFTMAX_OPS or (op_type in DECOMPOSED_NORM_OPS and in_norm_scope(name))


def fp32_node_names(model: onnx.ModelProto) -> list[str]:
    """Names of the nodes to pin to FP32, in graph order (unnamed nodes cannot be targeted)."""
    structural = {node.name for norm in decomposed_layernorms(model) for node in norm}
    names: list[str] = []
    for node in iter_nodes(model.graph):
        if node.name and (node.name in structural or wants_fp32_node(node.op_type, node.name)) and node.name not in names:
            names.append(node.name)
    return names


def keep_fp32(network, trt, names=()) -> int:
    """Pin normalization/softmax layers of a parsed TensorRT network to FP32; returns how many.

    `names` are ONNX node names to pin as well (`fp32_node_names` of the parsed file): TensorRT
    names each parsed layer after its node, and only the ONNX graph shows which float math is a
    decomposed LayerNorm. Takes effect with BuilderFlag.OBEY_PRECISION_CONSTRAINTS (set by the caller).
    """
    names = frozenset(names)
    keep = {getattr(trt.LayerType, n) for n in TRT_KEEP_TYPES if hasattr(trt.LayerType, n)}
    parts = {getattr(trt.LayerType, n) for n in TRT_NORM_PART_TYPES if hasattr(trt.LayerType, n)}
    floats = (trt.float32, trt.float16)
    pinned = 0
    for index in range(network.num_layers):
        layer = network.get_layer(index)
        if not (layer.type in keep or layer.name in names or (layer.type in parts and in_norm_scope(layer.name))):
            continue
        outputs = [layer.get_output(j) for j in range(layer.num_outputs)]
        if not outputs or any(out.dtype not in floats for out in outputs):
            continue  # shape/int math inside a norm scope must keep its own type
        layer.precision = trt.float32
        for j in range(layer.num_outputs):
            layer.set_output_type(j, trt.float32)
        pinned += 1
    return pinned
