"""Small real ONNX models for the TensorRT tests (exported by torch), plus checks on them.

Other test_tensorrt_* files import the builders from here.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper
from torch import nn

from edgedistill.backends.trt_precision import fp32_node_names

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


class TokenHeadNet(nn.Module):
    """Shaped like DeployModel: the LayerNorm sits in `token_head = Sequential(LayerNorm, Linear)`, a scope
    without "norm" in its name. The float math before it is no LayerNorm: tokens centred by a
    ReduceMean/Sub, their variance used as a gate (no Sqrt/Div), attention's Div by sqrt(d)."""

    def __init__(self):
        super().__init__()
        self.patch = nn.Conv2d(3, 16, kernel_size=8, stride=8)
        self.token_head = nn.Sequential(nn.LayerNorm(16), nn.Linear(16, 8))

    def forward(self, x):
        tokens = self.patch(x).flatten(2).transpose(1, 2)
        centred = tokens - tokens.mean(-1, keepdim=True)
        gated = tokens * (centred.pow(2).mean(-1, keepdim=True) + 1.0)
        attn = torch.softmax(centred @ centred.transpose(1, 2) / math.sqrt(16), dim=-1)
        return self.token_head((attn @ gated).mean(1))


# The opset-16 decomposition of token_head.0 (the LayerNorm), node by node.
TOKEN_HEAD_LN = {f"/token_head/token_head.0/{op}"
                 for op in ("ReduceMean", "Sub", "Pow", "ReduceMean_1", "Add", "Sqrt", "Div", "Mul", "Add_1")}


def export_tiny(path: Path, *, opset: int = 17, dynamic_batch: bool = True, dynamic_spatial: bool = False,
                net: type[nn.Module] = TinyViT) -> Path:
    torch.manual_seed(0)
    axes = {}
    if dynamic_batch or dynamic_spatial:
        axes["input"] = {0: "batch"} if dynamic_batch else {}
        if dynamic_spatial:
            axes["input"].update({2: "height", 3: "width"})
        axes["output"] = {0: "batch"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
        torch.onnx.export(net().eval(), torch.randn(1, 3, IMG, IMG), str(path), dynamo=False, opset_version=opset,
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


def test_decomposed_layernorm_outside_a_norm_scope_is_found_by_structure(tmp_path):
    model = onnx.load(str(export_tiny(tmp_path / "m.onnx", opset=16, net=TokenHeadNet)))
    names = {node.name for node in model.graph.node}
    assert TOKEN_HEAD_LN <= names and {"/ReduceMean", "/Sub", "/Pow", "/ReduceMean_1", "/Add", "/Mul", "/Div"} <= names
    assert set(fp32_node_names(model)) == TOKEN_HEAD_LN | {"/Softmax"}  # the look-alike math outside stays fp16


def test_decomposed_layernorm_variants_through_casts():
    """x*x for the square, Reciprocal then Mul for the scale, and Casts in between still match."""
    def node(op, inputs, output, **attrs):
        return helper.make_node(op, inputs, [output], name=f"/head/{output}", **attrs)

    to_float = {"to": TensorProto.FLOAT}
    nodes = [
        node("Cast", ["x"], "xc", **to_float),
        node("ReduceMean", ["xc"], "mean", axes=[-1]),
        node("Cast", ["mean"], "mean_c", **to_float),
        node("Sub", ["xc", "mean_c"], "d"),
        node("Mul", ["d", "d"], "sq"),
        node("ReduceMean", ["sq"], "var", axes=[-1]),
        node("Add", ["var", "eps"], "var_eps"),
        node("Sqrt", ["var_eps"], "std"),
        node("Reciprocal", ["std"], "inv"),
        node("Mul", ["d", "inv"], "normed"),
        node("Cast", ["normed"], "normed_c", **to_float),
        node("Mul", ["normed_c", "w"], "scaled"),
        node("Add", ["scaled", "b"], "shifted"),
        node("Sub", ["shifted", "x"], "residual"),  # plain float math after the norm
        node("Div", ["residual", "eps"], "y"),
    ]
    consts = [helper.make_tensor(n, TensorProto.FLOAT, [1], [v]) for n, v in (("eps", 1e-5), ("w", 2.0), ("b", 0.5))]
    vinfo = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, 4, 16]) for n in ("x", "y")]
    model = helper.make_model(helper.make_graph(nodes, "g", vinfo[:1], vinfo[1:], consts),
                              opset_imports=[helper.make_opsetid("", 13)])
    onnx.checker.check_model(model)
    assert fp32_node_names(model) == [f"/head/{n}" for n in ("mean", "d", "sq", "var", "var_eps", "std", "inv", "normed", "scaled", "shifted")]
