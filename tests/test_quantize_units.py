"""Small, fast pieces of the quantize stage: the fallback's search order, NNCF model-type
detection, fidelity arithmetic, and the SQNR combination."""

from __future__ import annotations

import math

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from edgedistill.config import QuantizeConfig
from edgedistill.errors import EdgedistillError
from edgedistill.quantize.fallback import _clearly_better, _next_k, float_layer_cap
from edgedistill.quantize.fidelity import Fidelity
from edgedistill.quantize.fidelity import Budget, compare
from edgedistill.quantize.nncf_ov import resolve_model_type
from edgedistill.quantize.sensitivity import _combine_db


def test_search_doubles_then_bisects_to_the_smallest_passing_count():
    passes = lambda k: k >= 6  # noqa: E731
    lo, hi, tried = 0, None, []
    while (k := _next_k(lo, hi, cap=25)) is not None:
        tried.append(k)
        lo, hi = (lo, k) if passes(k) else (k, hi)
    assert tried == [1, 2, 4, 8, 6, 5] and hi == 6
    assert _next_k(25, None, cap=25) is None and _next_k(16, None, cap=25) == 25


def test_float_layer_cap_never_exceeds_the_ranked_layers():
    assert float_layer_cap(quantizable=40, max_share=0.5, fixed=2, ranked=30) == 18
    assert float_layer_cap(quantizable=40, max_share=0.5, fixed=2, ranked=3) == 3  # trials past 3 would repeat k=3
    assert float_layer_cap(quantizable=4, max_share=0.1, fixed=0, ranked=2) == 1  # at least one to try
    assert float_layer_cap(quantizable=4, max_share=0.5, fixed=2, ranked=0) == 0  # nothing left: no search


def _graph(op: str, path):
    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 4])
    node = helper.make_node(op, ["input"], ["out"], **({"axis": -1} if op == "Softmax" else {}))
    onnx.save(helper.make_model(helper.make_graph([node], "g", [x], [y]), opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def test_nncf_model_type_follows_the_graph(tmp_path):
    assert resolve_model_type(QuantizeConfig(), _graph("Softmax", tmp_path / "t.onnx")) == "transformer"
    assert resolve_model_type(QuantizeConfig(), _graph("Relu", tmp_path / "c.onnx")) == "cnn"
    assert resolve_model_type(QuantizeConfig(nncf_model_type="transformer"), tmp_path / "c.onnx") == "transformer"
    with pytest.raises(EdgedistillError):
        resolve_model_type(QuantizeConfig(nncf_model_type="vit"), tmp_path / "c.onnx")


def test_fidelity_uses_embedding_for_cosine_and_logits_for_top1():
    rng = np.random.default_rng(0)
    ref = {"embedding": rng.standard_normal((8, 5)), "logits": rng.standard_normal((8, 3))}
    same = compare(ref, ref)
    assert math.isclose(same.cosine, 1.0) and same.top1 == 1.0 and same.meets(Budget(0.99, 0.99))
    flipped = compare(ref, {"embedding": -ref["embedding"], "logits": -ref["logits"]})
    assert flipped.cosine < 0 and flipped.top1 < 1 and not flipped.meets(Budget(0.5, 0.0))
    assert compare({"out": ref["embedding"]}, {"out": ref["embedding"]}).top1 is None


def test_sqnr_of_two_equal_noise_sources_is_3db_lower():
    assert math.isclose(_combine_db([30.0, 30.0]), 30.0 - 10 * math.log10(2), rel_tol=1e-9)
    assert _combine_db([]) == math.inf


def test_output_layers_are_the_quantizable_nodes_that_write_graph_outputs(tmp_path):
    import torch

    from edgedistill.export.onnx_export import export_onnx
    from edgedistill.quantize.fallback import output_layers, quantizable_layers

    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(4 * 6 * 6, 5)).eval()
    path = export_onnx(model, [3, 8, 8], tmp_path / "m.onnx", ["logits"])
    assert output_layers(path, ("Conv", "Gemm", "MatMul")) == ["/3/Gemm"]
    assert quantizable_layers(path, ("Conv", "Gemm", "MatMul")) == 2


def test_below_budget_more_float_layers_must_buy_real_fidelity():
    fewer = Fidelity(cosine=0.9931, top1=0.875, samples=48)
    assert not _clearly_better(Fidelity(0.9939, 0.875, 48), fewer)  # same top-1, +0.0008 cosine: keep fewer float layers
    assert _clearly_better(Fidelity(0.9921, 0.896, 48), fewer)
    assert _clearly_better(Fidelity(0.9990, None, 48), Fidelity(0.9931, None, 48))


def test_a_near_zero_bias_does_not_make_a_layer_the_most_sensitive(tmp_path):
    """Two Convs: `benign` has plain weights and a tiny bias (int32-quantized badly, relative to itself,
    but harmless to the output); `outlier` has one huge weight that crushes its other weights in int8."""
    from edgedistill.config import QuantizeConfig
    from edgedistill.quantize.ort_static import quantize_ort_static
    from edgedistill.quantize.sensitivity import layer_sensitivity

    rng = np.random.default_rng(0)
    benign_w = rng.normal(size=(8, 3, 3, 3)).astype(np.float32)
    outlier_w = rng.normal(size=(8, 8, 3, 3)).astype(np.float32)
    outlier_w[0, 0, 0, 0] = 400.0
    inits = [helper.make_tensor(n, TensorProto.FLOAT, a.shape, a.flatten()) for n, a in (
        ("benign_w", benign_w), ("benign_b", np.full(8, 1e-6, np.float32)),
        ("outlier_w", outlier_w), ("outlier_b", rng.normal(size=8).astype(np.float32)))]
    nodes = [helper.make_node("Conv", ["input", "benign_w", "benign_b"], ["mid"], name="benign", pads=[1, 1, 1, 1]),
             helper.make_node("Conv", ["mid", "outlier_w", "outlier_b"], ["output"], name="outlier", pads=[1, 1, 1, 1])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 8, 8])],
                              [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 8, 8, 8])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, tmp_path / "float.onnx")
    batch = rng.normal(size=(8, 3, 8, 8)).astype(np.float32)
    cfg = QuantizeConfig(op_types=("Conv",), per_channel=False)
    quantize_ort_static(tmp_path / "float.onnx", tmp_path / "qdq.onnx", batch, cfg)
    ranked = layer_sensitivity(tmp_path / "float.onnx", tmp_path / "qdq.onnx", batch, ("Conv",))
    assert list(ranked) == ["outlier", "benign"], ranked


@pytest.mark.parametrize("backbone, kind", [("resnet10t", "cnn"), ("vit_tiny_patch16_224", "transformer")])
def test_nncf_model_type_reads_the_backbone_not_the_students_own_token_head(tmp_path, backbone, kind):
    # every exported student ends in edgedistill's token head, a LayerNorm: auto took every CNN student for a transformer
    import timm
    import torch

    from edgedistill.export.onnx_export import export_onnx
    from edgedistill.models.deploy import DeployModel

    args = {"depth": 1, "embed_dim": 32, "num_heads": 2, "img_size": 32} if backbone.startswith("vit") else {}
    model = timm.create_model(backbone, pretrained=False, num_classes=0, **args)
    head = torch.nn.Sequential(torch.nn.LayerNorm(model.num_features), torch.nn.Linear(model.num_features, 8))
    path = tmp_path / "student.onnx"
    export_onnx(DeployModel(model, head, None).eval(), [3, 32, 32], path, ["embedding"])
    assert any(node.op_type == "LayerNormalization" for node in onnx.load(str(path)).graph.node)
    assert resolve_model_type(QuantizeConfig(), path) == kind
