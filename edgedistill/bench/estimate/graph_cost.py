"""FLOPs and bytes moved per ONNX op, at a given batch size and precision.

Shapes come from onnx shape inference with the batch axis made concrete; where it leaves some
unresolved (Swin's window reshapes defeat it, and ORT's symbolic inference too), from one ONNX
Runtime run of the graph at that batch. An op whose shapes neither resolves is marked `unknown`
(roofline.py then gives no time rather than costing it at 0). Q/DQ nodes are
counted as free where the runtime fuses them into the int8 kernel around them (TensorRT,
OpenVINO, ONNX Runtime's CPU provider): an op fed by DequantizeLinear then runs in int8, and its
quantized inputs and weights move 1 byte per value. ONNX Runtime's CUDA provider fuses nothing
(`qdq_fused=False`): each Q/DQ is a kernel of its own and the matmul after it runs in float.
"""

from __future__ import annotations

import functools
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper, shape_inference

MATMUL_OPS = {"MatMul", "Gemm", "Conv", "MatMulInteger", "ConvInteger", "QLinearMatMul", "QLinearConv"}
# Ops that only relabel memory: no compute, no traffic of their own.
VIEW_OPS = {"Reshape", "Squeeze", "Unsqueeze", "Flatten", "Identity", "Shape", "Constant", "ConstantOfShape",
            "Dropout", "Size", "Range"}
QDQ_OPS = {"QuantizeLinear", "DequantizeLinear"}
# Rough arithmetic per output element for the common non-matmul ops (memory-bound in practice).
FLOPS_PER_ELEMENT = {"Softmax": 5, "LayerNormalization": 8, "Erf": 8, "Gelu": 8, "Tanh": 8, "Exp": 4, "Sigmoid": 4,
                     "HardSwish": 3, "ReduceMean": 1, "Transpose": 0, "Concat": 0, "Slice": 0, "Gather": 0, "Split": 0, "Expand": 0,
                     "QuantizeLinear": 3, "DequantizeLinear": 2}  # Q/DQ: only where they run unfused


@dataclass(frozen=True)
class OpCost:
    name: str
    op_type: str
    flops: float  # multiply-add = 2
    bytes: float  # inputs + weights + outputs, once each
    precision: str  # "int8" or the float precision
    unknown: bool = False  # a tensor's shape was not resolved: flops and bytes are undercounted


def _set_batch(model: onnx.ModelProto, batch: int) -> None:
    for value in list(model.graph.input) + list(model.graph.output):
        dims = value.type.tensor_type.shape.dim
        if dims and not dims[0].HasField("dim_value"):
            dims[0].dim_value = batch


def _shapes(model: onnx.ModelProto) -> dict[str, tuple[tuple[int, ...], int]]:
    """name -> (shape, element type) for every tensor shape inference resolved."""
    out = {}
    for value in list(model.graph.value_info) + list(model.graph.input) + list(model.graph.output):
        t = value.type.tensor_type
        dims = [d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim]
        if t.HasField("shape") and all(d is not None for d in dims):  # no shape field: rank unknown, not a scalar
            out[value.name] = (tuple(dims), t.elem_type)
    for init in model.graph.initializer:
        out[init.name] = (tuple(init.dims), init.data_type)
    return out


@functools.lru_cache(maxsize=8)  # one run per graph and batch, not per row costed from it
def _runtime_shapes(path: str, stamp: tuple, batch: int, names: tuple[str, ...]) -> dict[str, tuple[tuple[int, ...], int]]:
    """name -> (shape, element type) of `names` from one ONNX Runtime run of the graph at `batch` (zeros in),
    with those tensors exposed as outputs of an in-memory copy; {} when it cannot run. `stamp` keys the cache."""
    from ...backends import get_backend  # lazy: only graphs that shape inference leaves unresolved pay for a session

    model = onnx.load(path)
    _set_batch(model, batch)
    initializers = {init.name for init in model.graph.initializer}
    feeds = {}
    for value in model.graph.input:
        if value.name in initializers:
            continue
        t = value.type.tensor_type
        dims = [d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim]
        if None in dims:  # a dynamic axis besides the batch: no input to run it on
            return {}
        feeds[value.name] = np.zeros(dims, helper.tensor_dtype_to_np_dtype(t.elem_type))
    outputs = {o.name for o in model.graph.output}
    model.graph.output.extend(onnx.ValueInfoProto(name=n) for n in names if n not in outputs)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            probe = Path(tmp) / "probe.onnx"
            onnx.save(model, str(probe))
            with get_backend("onnxruntime").runner(probe, threads=1) as runner:
                out = runner.infer(feeds)
    except Exception:  # ORT raises its own Exception subclasses; a graph it cannot run leaves its ops unknown
        return {}
    return {n: (tuple(a.shape), helper.np_dtype_to_tensor_dtype(a.dtype)) for n, a in out.items() if n in names}


def _itemsize(elem_type: int) -> int:
    return np.dtype(helper.tensor_dtype_to_np_dtype(elem_type)).itemsize


def _matmul_flops(node, shapes) -> float:
    a, out = shapes.get(node.input[0]), shapes.get(node.output[0])
    if a is None or out is None:
        return 0.0
    out_elems = float(np.prod(out[0]))
    if node.op_type in ("Conv", "ConvInteger", "QLinearConv"):
        w = shapes.get(node.input[3 if node.op_type == "QLinearConv" else 1])
        return 2.0 * out_elems * float(np.prod(w[0][1:])) if w else 0.0
    if node.op_type == "Gemm" and any(att.name == "transA" and att.i for att in node.attribute):
        return 2.0 * out_elems * a[0][0]
    return 2.0 * out_elems * a[0][-1]


def op_costs(model_path: str | Path, batch: int = 1, float_precision: str = "fp32", int8_ops: bool = False,
             qdq_fused: bool = True) -> list[OpCost]:
    """Per-op costs. `int8_ops` treats every matmul/conv as int8 (for an fp32 graph that a runtime
    such as TensorRT or NNCF quantizes); a QDQ graph marks its int8 ops itself, unless `qdq_fused`
    is False: then Q/DQ run as ops of their own and every matmul/conv in float."""
    model = onnx.load(str(model_path))
    _set_batch(model, batch)
    model = shape_inference.infer_shapes(model, data_prop=True)
    shapes = _shapes(model)
    initializers = {init.name for init in model.graph.initializer}
    producers = {out: node for node in model.graph.node for out in node.output}
    costed = [node for node in model.graph.node if not (node.op_type in VIEW_OPS or (qdq_fused and node.op_type in QDQ_OPS))]
    unresolved = sorted({name for node in costed for name in (*node.input, *node.output) if name and name not in shapes})
    if unresolved:
        stat = Path(model_path).stat()
        shapes.update(_runtime_shapes(str(model_path), (stat.st_mtime_ns, stat.st_size), batch, tuple(unresolved)))
    float_bytes = 2 if float_precision == "fp16" else 4
    costs = []
    for node in costed:
        fed_by_dq = [qdq_fused and bool(i) and getattr(producers.get(i), "op_type", "") == "DequantizeLinear" for i in node.input]
        quantized = node.op_type in MATMUL_OPS and (any(fed_by_dq) or int8_ops or "Integer" in node.op_type or "QLinear" in node.op_type)
        moved = 0.0
        for name, dq in zip(list(node.input) + list(node.output), fed_by_dq + [False] * len(node.output)):
            if not name or name not in shapes:
                continue
            shape, elem = shapes[name]
            size = _itemsize(elem)
            if dq:  # the int8 tensor behind the DequantizeLinear is what the kernel reads
                size = 1
            elif elem in (TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.DOUBLE):
                size = 1 if (quantized and (name in initializers or name in node.input)) else float_bytes
            moved += float(np.prod(shape)) * size if shape else size
        if node.op_type in MATMUL_OPS:
            flops = _matmul_flops(node, shapes)
        else:
            out = shapes.get(node.output[0]) if node.output else None
            flops = float(np.prod(out[0])) * FLOPS_PER_ELEMENT.get(node.op_type, 1) if out else 0.0
        unknown = any(name and name not in shapes for name in (*node.input, *node.output))
        costs.append(OpCost(node.name or node.op_type, node.op_type, flops, moved, "int8" if quantized else float_precision, unknown))
    return costs


def sig(value: float) -> float:
    """Six significant digits: tiny models' figures must not round to zero."""
    return float(f"{value:.6g}")


def summarize(costs: list[OpCost]) -> dict:
    int8 = sum(c.flops for c in costs if c.precision == "int8")
    return {"gflop_float": sig((sum(c.flops for c in costs) - int8) / 1e9), "gop_int8": sig(int8 / 1e9),
            "mb_moved": sig(sum(c.bytes for c in costs) / 1e6), "ops": len(costs),
            **({"unknown_shapes": unknown} if (unknown := sum(c.unknown for c in costs)) else {})}


def weight_bytes(model_path: str | Path) -> int:
    """Bytes of the stored weights (int8 initializers count 1 byte each)."""
    model = onnx.load(str(model_path))
    return int(sum(numpy_helper.to_array(init).nbytes for init in model.graph.initializer))
