"""The trtexec command lines a bundle's build_engines.sh runs (exact flags, shapes from the target)."""

from __future__ import annotations

import dataclasses

import pytest

from edgedistill.backends.trt_bundle import trtexec_command
from edgedistill.errors import EdgedistillError
from edgedistill.targets import load_target

DYNAMIC = [None, 3, 112, 112]
PINS = ["/blocks.0/norm1/LayerNormalization", "/blocks.0/attn/Softmax"]
PIN_SPEC = "/blocks.0/norm1/LayerNormalization:fp32,/blocks.0/attn/Softmax:fp32"


def test_fp16_on_jetson_orin():
    cmd = trtexec_command("onnx/fp16/model.onnx", "engines/fp16.engine", "fp16", load_target("jetson-orin"), "input", DYNAMIC,
                          fp32_layers=PINS, timing_cache="engines/timing.cache")
    assert cmd == [
        "trtexec",
        "--onnx=onnx/fp16/model.onnx",
        "--saveEngine=engines/fp16.engine",
        "--fp16",
        "--minShapes=input:1x3x112x112",
        "--optShapes=input:1x3x112x112",
        "--maxShapes=input:8x3x112x112",
        "--memPoolSize=workspace:2048M",
        "--timingCacheFile=engines/timing.cache",
        f"--layerPrecisions={PIN_SPEC}",
        f"--layerOutputTypes={PIN_SPEC}",
        "--precisionConstraints=obey",
        "--skipInference",
    ]
    assert "--verbose" not in cmd


def test_shapes_follow_the_target_batch_range():
    target = dataclasses.replace(load_target("nvidia-gpu"), batch_min=2, batch_opt=4, batch_max=16)
    cmd = trtexec_command("m.onnx", "m.engine", "fp32", target, "pixels", [None, 3, 224, 224])
    assert cmd[3:6] == ["--minShapes=pixels:2x3x224x224", "--optShapes=pixels:4x3x224x224", "--maxShapes=pixels:16x3x224x224"]
    assert "--memPoolSize=workspace:4096M" in cmd
    assert not any(c.startswith(("--fp16", "--int8", "--best", "--layerPrecisions")) for c in cmd)


@pytest.mark.parametrize("precision,flags", [("int8", ["--int8", "--fp16"]), ("best", ["--fp16"]), ("fp32", [])])
def test_precision_flags(precision, flags):
    cmd = trtexec_command("m.onnx", "m.engine", precision, load_target("jetson-orin"), "input", DYNAMIC)
    assert cmd[3:3 + len(flags)] == flags and cmd[3 + len(flags)].startswith("--minShapes=")


def test_best_adds_int8_only_for_a_qdq_model(tmp_path):
    """trtexec --best would also run INT8 on an fp32 model, with placeholder scales (and bf16 on Ampere+)."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    scale, zero = numpy_helper.from_array(np.float32(0.1), "s"), numpy_helper.from_array(np.int8(0), "z")
    nodes = [helper.make_node("QuantizeLinear", ["input", "s", "z"], ["q"]), helper.make_node("DequantizeLinear", ["q", "s", "z"], ["out"])]
    graph = helper.make_graph(nodes, "qdq", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, 4, 4])],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["batch", 3, 4, 4])], [scale, zero])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(tmp_path / "qdq.onnx"))
    cmd = trtexec_command(tmp_path / "qdq.onnx", "m.engine", "best", load_target("jetson-orin"), "input", DYNAMIC)
    assert "--fp16" in cmd and "--int8" in cmd and "--best" not in cmd


def test_layer_pins_only_when_reduced_precision():
    fp32 = trtexec_command("m.onnx", "m.engine", "fp32", load_target("jetson-orin"), "input", DYNAMIC, fp32_layers=PINS)
    assert "--precisionConstraints=obey" not in fp32
    odd = trtexec_command("m.onnx", "m.engine", "fp16", load_target("jetson-orin"), "input", DYNAMIC, fp32_layers=["a,b", "c:d"])
    assert "--precisionConstraints=obey" not in odd  # names trtexec's spec cannot carry are left out


def test_dla_fixes_the_batch_and_allows_gpu_fallback():
    cmd = trtexec_command("m.onnx", "m.engine", "int8", dataclasses.replace(load_target("jetson-orin-dla"), batch_max=8), "input", DYNAMIC)
    assert "--minShapes=input:1x3x112x112" in cmd and "--maxShapes=input:1x3x112x112" in cmd
    assert cmd[-3:-1] == ["--useDLACore=0", "--allowGPUFallback"]


def test_fp32_on_a_dla_target_is_a_gpu_engine_with_the_batch_range():
    # DLA runs only FP16 and INT8: asking trtexec for DLA without either would not give an fp32 DLA engine
    cmd = trtexec_command("m.onnx", "m.engine", "fp32", dataclasses.replace(load_target("jetson-orin-dla"), batch_max=8), "input", DYNAMIC)
    assert not any(c.startswith(("--useDLACore", "--allowGPUFallback", "--fp16", "--int8")) for c in cmd)
    assert "--maxShapes=input:8x3x112x112" in cmd


def test_static_batch_model_takes_no_shape_flags():
    cmd = trtexec_command("m.onnx", "m.engine", "fp16", load_target("jetson-orin"), "input", [1, 3, 112, 112])
    assert not any(c.startswith(("--minShapes", "--optShapes", "--maxShapes")) for c in cmd)


def test_trt8_takes_workspace_in_mib_without_suffix():
    cmd = trtexec_command("m.onnx", "m.engine", "fp16", load_target("jetson-orin-jp5"), "input", DYNAMIC)
    assert "--memPoolSize=workspace:2048" in cmd and "--skipInference" not in cmd


def test_trt11_has_no_precision_flags():
    cmd = trtexec_command("m.onnx", "m.engine", "int8", load_target("nvidia-gpu"), "input", DYNAMIC, fp32_layers=PINS, trt_version="11.2")
    assert not any(c in ("--int8", "--fp16", "--best", "--precisionConstraints=obey") for c in cmd)


def test_unknown_precision():
    with pytest.raises(EdgedistillError, match="precision 'int4'"):
        trtexec_command("m.onnx", "m.engine", "int4", load_target("jetson-orin"), "input", DYNAMIC)
