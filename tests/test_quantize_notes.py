"""The bench row's note says what INT8 kept in float and whether it met its budget, for both accuracy-aware paths."""

from __future__ import annotations

from edgedistill.artifacts import Artifact
from edgedistill.bench.measure import quantization_note


def _openvino(nncf: dict) -> Artifact:
    return Artifact(kind="openvino-ir", path="openvino/int8", name="openvino-int8", backend="openvino", precision="int8", extra={"nncf": nncf})


def test_nncf_accuracy_control_that_missed_max_drop_lists_its_reverted_ops():
    ops = [f"/blocks/blocks.{i}/attn/qkv/MatMul" for i in range(8)]
    missed = _openvino({"accuracy_control": True, "max_drop": 0.01, "metric": "top-1 agreement", "metric_value": 0.958333,
                        "drop": 0.041667, "within_max_drop": False, "quantized_ops": 13, "float_ops": ops})
    note = quantization_note(missed)
    assert "NNCF accuracy control: top-1 agreement drop 0.0417 NOT within nncf_max_drop 0.01" in note
    assert "8 of 13 quantized op(s) reverted to float (/blocks/blocks.0/attn/qkv/MatMul," in note and "(+2 more)" in note
    assert quantization_note(_openvino({**missed.extra["nncf"], "within_max_drop": True, "drop": 0.004})) == ""
    assert quantization_note(_openvino({"accuracy_control": False, "max_drop": None})) == ""  # plain NNCF: nothing to say


def test_the_ort_fallback_note_is_unchanged():
    layers = [f"/l{i}/MatMul" for i in range(7)]
    art = Artifact(kind="onnx", path="q.onnx", extra={"fallback": {"within_budget": False}, "float_layers": layers})
    assert quantization_note(art) == ("7 layer(s) kept in float (/l0/MatMul, /l1/MatMul, /l2/MatMul, /l3/MatMul, /l4/MatMul, "
                                      "/l5/MatMul (+1 more)); NOT within the fidelity budget on held-out views")
