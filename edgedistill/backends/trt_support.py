"""What each TensorRT version's ONNX parser and the Orin DLA accept: a small, sourced table.

Sources: onnx/onnx-tensorrt docs/operators.md per release branch ("TensorRT 8.5 supports operators
up to Opset 17", "TensorRT 10.0 ... opset 9 to opset 20", "TensorRT 10.15 ... opset 9 to opset 24"),
its docs/Changelog.md (LayerNormalization and GroupNormalization arrive in 8.6 EA), and TensorRT's
"DLA Supported Layers and Restrictions". Versions between rows inherit the older row, which errs
on the safe side.
"""

from __future__ import annotations

import re

# (major, minor) -> highest ONNX opset its parser accepts.
MAX_OPSET = {
    (8, 0): 13,
    (8, 4): 13,
    (8, 5): 17,  # JetPack 5.1.x
    (8, 6): 17,  # JetPack 6.0
    (9, 2): 19,
    (10, 0): 20,  # JetPack 6.1 / 6.2 ship 10.3
    (10, 15): 24,
    (11, 2): 24,
}

# ONNX op -> first TensorRT version whose parser imports it natively.
OPS_ADDED = {
    "LayerNormalization": (8, 6),
    "GroupNormalization": (8, 6),
    "IsInf": (8, 6),
    "Hardmax": (9, 2),
    "RMSNormalization": (10, 15),
    "RotaryEmbedding": (10, 15),
}

# Ops no TensorRT release parses, with the fix that applies to a vision student.
_QOPERATOR_FIX = "quantize in QDQ format (onnxruntime QuantFormat.QDQ, symmetric int8 activations) instead of QOperator format"
NEVER_SUPPORTED = {
    "QLinearConv": _QOPERATOR_FIX,
    "QLinearMatMul": _QOPERATOR_FIX,
    "ConvInteger": _QOPERATOR_FIX,
    "MatMulInteger": _QOPERATOR_FIX,
    "DynamicQuantizeLinear": "use static QDQ quantization; TensorRT has no dynamic quantization op",
    "Unique": "remove the op from the exported graph (do it in post-processing)",
    "Compress": "remove the op from the exported graph (do it in post-processing)",
    "SequenceConstruct": "export without Python lists of tensors in forward()",
    "SequenceAt": "export without Python lists of tensors in forward()",
    "SequenceInsert": "export without Python lists of tensors in forward()",
    "SplitToSequence": "export without Python lists of tensors in forward()",
    "ConcatFromSequence": "export without Python lists of tensors in forward()",
    "StringNormalizer": "keep string processing outside the model",
    "TfIdfVectorizer": "keep string processing outside the model",
    "Multinomial": "sample outside the model",
    "Bernoulli": "sample outside the model",
    "BitShift": "replace the bit operation with arithmetic before export",
    "DFT": "compute the transform outside the model",
}

# ONNX ops that map onto DLA layers (Activation: ReLU/Sigmoid/TanH/Clip/LeakyReLU, Comparison,
# Concatenation, Convolution/FullyConnected, Deconvolution, ElementWise, LRN, PReLU, Pooling, Resize,
# Scale, Shuffle, Slice, SoftMax), plus plumbing TensorRT folds away in a static-shape build.
DLA_OPS = frozenset({
    "Relu", "Sigmoid", "Tanh", "Clip", "LeakyRelu", "PRelu",
    "Equal", "Greater", "Less",
    "Concat", "Conv", "ConvTranspose", "Gemm", "MatMul",
    "Add", "Sub", "Mul", "Max", "Min", "Div", "Pow",
    "LRN", "MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool",
    "Resize", "BatchNormalization", "Reshape", "Transpose", "Flatten", "Squeeze", "Unsqueeze",
    "Slice", "Softmax",
    "Constant", "Identity", "Dropout", "Shape", "QuantizeLinear", "DequantizeLinear",
})


def parse_version(text: str | None) -> tuple[int, ...] | None:
    """'10.3' / '10.3.0.30' -> (10, 3) / (10, 3, 0, 30); None when unparseable."""
    if not text:
        return None
    parts = re.findall(r"\d+", str(text))
    return tuple(int(p) for p in parts) if len(parts) >= 2 else None


def version_label(version: tuple[int, ...]) -> str:
    return ".".join(str(p) for p in version)


def max_opset(version: tuple[int, ...]) -> int | None:
    """Highest opset for `version` (the nearest older row); None below TensorRT 8.0."""
    rows = [key for key in MAX_OPSET if key <= tuple(version[:2])]
    return MAX_OPSET[max(rows)] if rows else None


def missing_ops(version: tuple[int, ...], ops) -> dict[str, tuple[int, int]]:
    """Ops present in `ops` that `version` cannot parse yet -> the version that added them."""
    return {op: added for op, added in OPS_ADDED.items() if op in ops and tuple(version[:2]) < added}


def has_weak_typing(version: tuple[int, ...]) -> bool:
    """TensorRT 11 removed the FP16/INT8 builder flags: every network is strongly typed."""
    return tuple(version[:1]) < (11,)
