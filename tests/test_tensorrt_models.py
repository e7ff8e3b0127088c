"""Small real ONNX models for the TensorRT tests (exported by torch), plus checks on them.

Other test_tensorrt_* files import the builders from here.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from torch import nn

IMG = 32


class TinyViT(nn.Module):
    """Conv patchify -> LayerNorm -> one attention-like Softmax(Q K^T) V -> Linear head."""

    def __init__(self):
        super().__init__()
        self.patch = nn.Conv2d(3, 16, kernel_size=8, stride=8)
        self.norm = nn.LayerNorm(16)
        self.head = nn.Linear(16, 8)

    def forward(self, x):
        tokens = self.norm(self.patch(x).flatten(2).transpose(1, 2))
        attn = torch.softmax(tokens @ tokens.transpose(1, 2) / 4.0, dim=-1)
        return self.head(attn @ tokens).mean(1)


def export_tiny(path: Path, *, opset: int = 17, dynamic_batch: bool = True, dynamic_spatial: bool = False) -> Path:
    torch.manual_seed(0)
    axes = {}
    if dynamic_batch or dynamic_spatial:
        axes["input"] = {0: "batch"} if dynamic_batch else {}
        if dynamic_spatial:
            axes["input"].update({2: "height", 3: "width"})
        axes["output"] = {0: "batch"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
        torch.onnx.export(TinyViT().eval(), torch.randn(1, 3, IMG, IMG), str(path), dynamo=False, opset_version=opset,
                          input_names=["input"], output_names=["output"], dynamic_axes=axes or None)
    return Path(path)


class _Reader:
    """Calibration data for onnxruntime's static quantizer: a few random batches."""

    def __init__(self, n: int = 4):
        rng = np.random.default_rng(0)
        self._batches = iter([{"input": rng.standard_normal((1, 3, IMG, IMG), dtype=np.float32)} for _ in range(n)])

    def get_next(self):
        return next(self._batches, None)


def quantize_qdq(src: Path, dst: Path, *, symmetric: bool = True, quantize_bias: bool | None = None) -> Path:
    """QDQ int8 via onnxruntime: symmetric int8 activations and float biases (TensorRT style, as the
    quantize stage writes for TensorRT targets) or ORT's defaults (uint8 activations, int32 biases)."""
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    quantize_static(
        str(src), str(dst), _Reader(),
        quant_format=QuantFormat.QDQ,
        activation_type=QuantType.QInt8 if symmetric else QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        extra_options={"ActivationSymmetric": symmetric, "WeightSymmetric": True,
                       "QuantizeBias": (not symmetric) if quantize_bias is None else quantize_bias},
    )
    return Path(dst)


def ops(path: Path) -> set[str]:
    return {node.op_type for node in onnx.load(str(path)).graph.node}


def test_opset17_export_keeps_layernorm_as_one_op(tmp_path):
    assert {"LayerNormalization", "Softmax", "MatMul", "Conv"} <= ops(export_tiny(tmp_path / "m.onnx"))


def test_opset16_export_decomposes_layernorm(tmp_path):
    found = ops(export_tiny(tmp_path / "m.onnx", opset=16))
    assert "LayerNormalization" not in found and {"ReduceMean", "Sqrt"} <= found


@pytest.mark.parametrize("symmetric,zero_type", [(True, onnx.TensorProto.INT8), (False, onnx.TensorProto.UINT8)])
def test_qdq_zero_point_types(tmp_path, symmetric, zero_type):
    model = onnx.load(str(quantize_qdq(export_tiny(tmp_path / "m.onnx"), tmp_path / "q.onnx", symmetric=symmetric)))
    inits = {i.name: i for i in model.graph.initializer}
    zero_points = [inits[n.input[2]] for n in model.graph.node if n.op_type == "QuantizeLinear" and n.input[2] in inits]
    assert zero_points and {z.data_type for z in zero_points} == {zero_type}
