"""Preflight of real exported ONNX models against TensorRT versions and targets (onnx only, no TensorRT)."""

from __future__ import annotations

import dataclasses

import onnx
import pytest

from edgedistill.backends.trt_preflight import errors, preflight
from edgedistill.backends.trt_support import max_opset, parse_version
from edgedistill.targets import load_target

from tests.test_tensorrt_models import export_tiny, quantize_qdq


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("preflight")
    fp = export_tiny(root / "model.onnx")
    return {
        "opset17": fp,
        "opset16": export_tiny(root / "model16.onnx", opset=16),
        "static_batch": export_tiny(root / "static.onnx", dynamic_batch=False),
        "dynamic_spatial": export_tiny(root / "spatial.onnx", dynamic_spatial=True),
        "qdq": quantize_qdq(fp, root / "model.qdq.onnx", symmetric=True),
        "qdq_uint8": quantize_qdq(fp, root / "model.u8.onnx", symmetric=False),
    }


def codes(findings, severity=None):
    return [f.code for f in findings if severity is None or f.severity == severity]


def with_opset(src, dst, opset):
    model = onnx.load(str(src))
    model.opset_import[0].version = opset  # only the declared opset matters to the check
    onnx.save(model, str(dst))
    return dst


def test_jetpack6_fp16_model_is_clean(models):
    assert preflight(models["opset17"], load_target("jetson-orin"), precision="fp16") == []


def test_layernorm_on_trt85_is_an_error_with_opset16_fix(models):
    found = preflight(models["opset17"], load_target("jetson-orin-jp5"), precision="fp16")
    (finding,) = [f for f in found if f.code == "op-unsupported"]
    assert finding.severity == "error" and "LayerNormalization" in finding.message and "8.6" in finding.message
    assert "export.opset=16" in finding.fix
    # The opset-16 export decomposes LayerNorm, which TensorRT 8.5 parses.
    assert errors(preflight(models["opset16"], load_target("jetson-orin-jp5"), precision="fp16")) == []


def test_opset_too_new_for_trt85(models, tmp_path):
    newer = with_opset(models["opset16"], tmp_path / "o18.onnx", 18)
    found = preflight(newer, load_target("jetson-orin-jp5"))
    (finding,) = [f for f in found if f.code == "opset-too-new"]
    assert "opset 18" in finding.message and "up to opset 17" in finding.message
    assert finding.fix == "re-export with export.opset=17"
    # TensorRT 10.3 takes opset 18 and 20 but not 21.
    assert "opset-too-new" not in codes(preflight(newer, load_target("jetson-orin")))
    assert "opset-too-new" in codes(preflight(with_opset(models["opset16"], tmp_path / "o21.onnx", 21), load_target("jetson-orin")))


def test_opset_too_new_suggests_16_when_layernorm_meets_old_trt(models, tmp_path):
    newer = with_opset(models["opset17"], tmp_path / "ln18.onnx", 18)
    (finding,) = [f for f in preflight(newer, load_target("jetson-orin-jp5")) if f.code == "opset-too-new"]
    assert finding.fix == "re-export with export.opset=16"


def test_version_table():
    assert max_opset((8, 5)) == 17 and max_opset((8, 6, 1)) == 17 and max_opset((10, 3)) == 20
    assert max_opset((10, 16)) == 24 and max_opset((7, 1)) is None
    assert parse_version("10.3.0.30") == (10, 3, 0, 30) and parse_version("ten") is None


def test_dynamic_spatial_dims_are_an_error(models):
    found = preflight(models["dynamic_spatial"], load_target("jetson-orin"), precision="fp16")
    (finding,) = [f for f in found if f.code == "dynamic-spatial"]
    assert finding.severity == "error" and "height" not in finding.fix and "{0: 'batch'}" in finding.fix


def test_static_batch_is_a_warning(models):
    found = preflight(models["static_batch"], load_target("jetson-orin"), precision="fp16")
    assert codes(found) == ["static-batch"] and found[0].severity == "warning"
    assert "batch 1..8" in found[0].message


def test_missing_input_name(models):
    found = preflight(models["opset17"], load_target("jetson-orin"), input_name="images")
    assert codes(found, "error") == ["input-missing"] and "input" in found[0].message


def test_int8_without_qdq_is_an_error(models):
    found = preflight(models["opset17"], load_target("jetson-orin"), precision="int8")
    (finding,) = [f for f in found if f.code == "int8-without-qdq"]
    assert finding.severity == "error" and "deprecated" in finding.message and "QDQ" in finding.fix
    assert codes(preflight(models["opset17"], load_target("jetson-orin"), precision="best")) == ["best-without-qdq"]


def test_int32_bias_dequantize_is_rejected(models, tmp_path):
    """ORT quantizes biases to int32 by default; TensorRT's parser takes only int8 DequantizeLinear inputs."""
    int32_bias = quantize_qdq(models["opset17"], tmp_path / "bias.qdq.onnx", symmetric=True, quantize_bias=True)
    found = preflight(int32_bias, load_target("jetson-orin"), precision="int8")
    assert "qdq-int32-dequantize" in codes(found, "error")
    assert "quantize_bias=false" in next(f.fix for f in found if f.code == "qdq-int32-dequantize")


def test_symmetric_qdq_passes_and_uint8_qdq_is_rejected(models):
    assert preflight(models["qdq"], load_target("jetson-orin"), precision="int8") == []
    found = preflight(models["qdq_uint8"], load_target("jetson-orin"), precision="int8")
    assert "qdq-uint8" in codes(found, "error")
    assert "symmetric_activations=true" in next(f.fix for f in found if f.code == "qdq-uint8")


def test_fp16_on_strongly_typed_trt11_needs_a_converted_model(models):
    found = preflight(models["opset17"], load_target("nvidia-gpu"), precision="fp16", trt_version="11.2.0")
    assert "fp16-needs-strong-typing" in codes(found, "error")
    assert errors(preflight(models["qdq"], load_target("nvidia-gpu"), precision="int8", trt_version="11.2.0")) == []


def test_dla_findings(models):
    dla = load_target("jetson-orin-dla")
    found = preflight(models["opset17"], dla, precision="fp16")
    assert errors(found) == []
    (fallback,) = [f for f in found if f.code == "dla-fallback"]
    assert "LayerNormalization x1" in fallback.message and "ReduceMean x1" in fallback.message
    assert "Conv" not in fallback.message and "Softmax" not in fallback.message
    assert "dla-fp32" in codes(preflight(models["opset17"], dla, precision="fp32"))
    # an fp32 engine is built for the GPU alone, so no DLA limit applies to it
    assert codes(preflight(models["opset17"], dataclasses.replace(dla, batch_max=8), precision="fp32", trt_version="11.1"), "error") == []
    ranged = dataclasses.replace(dla, batch_max=8)
    assert "dla-static-batch" in codes(preflight(models["opset17"], ranged, precision="fp16"))
    assert "dla-static-batch" not in codes(found)
    assert "dla-unavailable" in codes(preflight(models["opset17"], dla, precision="fp16", trt_version="11.1"), "error")
    assert "dla-unavailable" in codes(preflight(models["opset17"], dla, precision="fp16", trt_version="10.8"), "error")  # 10.7 was the last
    assert "dla-unavailable" not in codes(preflight(models["opset17"], dla, precision="fp16", trt_version="10.3"))


def test_dla_is_back_in_trt_11_4_1_under_jetpack_7_2_2(models):
    # "TensorRT 11.4.1 supports DLA on NVIDIA Jetson AGX Orin when using NVIDIA JetPack 7.2.2 or later"
    jp7 = dataclasses.replace(load_target("jetson-orin-dla"), jetpack="7.2.2")
    fp16 = models["opset17"]  # the codes asked about are the DLA release checks, not strong typing's
    assert "dla-unavailable" not in codes(preflight(fp16, jp7, precision="fp16", trt_version="11.4.1"))
    assert "dla-unavailable" in codes(preflight(fp16, jp7, precision="fp16", trt_version="11.4.0"), "error")  # Windows on ARM only
    assert "dla-unavailable" in codes(preflight(fp16, jp7, precision="fp16", trt_version="11.4"), "error")  # read as 11.4.0
    jp6 = dataclasses.replace(jp7, jetpack="6.1")
    assert "dla-unavailable" in codes(preflight(fp16, jp6, precision="fp16", trt_version="11.4.1"), "error")
    assert "dla-jetpack-unknown" in codes(preflight(fp16, dataclasses.replace(jp7, jetpack=None), precision="fp16", trt_version="11.5"))


def test_unknown_trt_version_is_a_warning(models):
    x86 = load_target("x86-cpu")
    assert codes(preflight(models["opset17"], x86)) == ["trt-version-unknown"]


def test_qoperator_ops_are_never_supported(models, tmp_path):
    model = onnx.load(str(models["opset17"]))
    model.graph.node[0].op_type = "QLinearConv"
    onnx.save(model, str(tmp_path / "qop.onnx"))
    found = preflight(tmp_path / "qop.onnx", load_target("jetson-orin"))
    (finding,) = [f for f in found if f.code == "op-unsupported"]
    assert "QLinearConv" in finding.message and "QDQ" in finding.fix
