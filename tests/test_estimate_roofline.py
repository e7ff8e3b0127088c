"""Estimator pieces: per-op FLOPs/bytes from ONNX graphs, roofline, CPU peaks, efficiency choice."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgedistill.bench.estimate.efficiency import PRIOR_EFFICIENCY, Sample, choose, fit, samples_of
from edgedistill.bench.estimate.graph_cost import op_costs, summarize, weight_bytes
from edgedistill.bench.estimate.peaks import Peaks, fp32_flops_per_cycle, host_cpu, int8_speedup
from edgedistill.bench.estimate.roofline import roofline_ms

from .test_bench_fixtures import embedder


def _save(path, nodes, inputs, outputs, inits):
    model = helper.make_model(helper.make_graph(nodes, "g", inputs, outputs, inits), opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def test_matmul_flops_and_bytes_scale_with_batch(tmp_path):
    path = embedder(tmp_path / "m.onnx", size=16, dim=32, classes=10)
    costs = {c.op_type + str(i): c for i, c in enumerate(op_costs(path, batch=4))}
    mm = [c for c in costs.values() if c.op_type == "MatMul"]
    assert [c.flops for c in mm] == [2 * 4 * 768 * 32, 2 * 4 * 32 * 10]
    # first MatMul: input 4x768 + weights 768x32 + output 4x32, fp32
    assert mm[0].bytes == 4 * (4 * 768 + 768 * 32 + 4 * 32)
    assert all(c.op_type != "Flatten" for c in costs.values())  # a view: no cost
    one = summarize(op_costs(path, batch=1))
    assert summarize(op_costs(path, batch=4))["gflop_float"] == pytest.approx(4 * one["gflop_float"], rel=1e-3)
    half = op_costs(path, batch=4, float_precision="fp16")
    assert [c for c in half if c.op_type == "MatMul"][0].bytes == mm[0].bytes / 2


def test_conv_flops(tmp_path):
    w = numpy_helper.from_array(np.zeros((8, 3, 3, 3), np.float32), "w")
    path = _save(tmp_path / "c.onnx", [helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1])],
                 [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3, 10, 10])],
                 [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 8, 10, 10])], [w])
    (conv,) = op_costs(path, batch=2)
    assert conv.flops == 2 * (2 * 8 * 10 * 10) * (3 * 3 * 3)


def _qdq_matmul(path):
    """x [n,64] -> Q -> DQ -> MatMul with DQ(int8 weights [64,32]) -> y [n,32]."""
    wq = numpy_helper.from_array(np.ones((64, 32), np.int8), "wq")
    scale = numpy_helper.from_array(np.array(0.1, np.float32), "s")
    zero = numpy_helper.from_array(np.array(0, np.int8), "z")
    nodes = [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["xq"]), helper.make_node("DequantizeLinear", ["xq", "s", "z"], ["xd"]),
             helper.make_node("DequantizeLinear", ["wq", "s", "z"], ["wd"]), helper.make_node("MatMul", ["xd", "wd"], ["y"])]
    return _save(path, nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 64])],
                 [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 32])], [wq, scale, zero])


def test_qdq_weights_are_one_byte_and_ops_int8(tmp_path):
    path = _qdq_matmul(tmp_path / "q.onnx")
    (mm,) = op_costs(path, batch=1)  # Q/DQ are fused away
    assert mm.precision == "int8" and mm.flops == 2 * 64 * 32
    assert mm.bytes == 64 * 1 + 64 * 32 * 1 + 32 * 4  # int8 input and weights, fp32 output
    assert summarize([mm])["gop_int8"] == pytest.approx(2 * 64 * 32 / 1e9)
    assert weight_bytes(path) == 64 * 32 + 4 + 1
    # an fp32 graph a runtime quantizes: the same matmul counted as int8
    fp32 = embedder(tmp_path / "m.onnx")
    assert {c.precision for c in op_costs(fp32, int8_ops=True) if c.op_type == "MatMul"} == {"int8"}


def test_roofline_takes_the_slower_of_compute_and_memory_per_op(tmp_path):
    path = embedder(tmp_path / "m.onnx", size=16, dim=32)
    costs = op_costs(path, batch=1)
    peaks = Peaks(1e-3, None, None, 1.0, "test")  # 1 GFLOP/s, 1 GB/s
    ms, detail = roofline_ms(costs, peaks)
    expected = sum(max(c.flops / 1e9, c.bytes / 1e9) for c in costs) * 1e3
    assert ms == pytest.approx(expected) and 0 <= detail["compute_bound_share"] <= 1
    assert roofline_ms(costs, Peaks(None, None, 11.0, 100.0, "npu"))[0] is None  # fp32 ops, no fp32 peak
    assert Peaks(None, 10.0, None, None, "x").compute("int8") == 10e12  # int8 falls back to fp16


def test_cpu_peak_from_isa():
    assert fp32_flops_per_cycle(["avx2", "fma", "avx512f"], "GenuineIntel") == 64
    assert fp32_flops_per_cycle(["avx2", "fma", "avx512f"], "AuthenticAMD") == 32  # Zen 4: 256-bit pipes
    assert fp32_flops_per_cycle(["asimd"]) == 16
    assert int8_speedup(["avx512_vnni"]) == 4 and int8_speedup(["avx2"]) == 2
    peaks = host_cpu({"cpu_ghz": 2.0, "isa": ["avx2", "fma"], "cpu_vendor": "AuthenticAMD"}, cores=2, bandwidth_gbs=20.0)
    assert peaks.tflops_fp32 == pytest.approx(2 * 2.0 * 32 / 1e3) and peaks.tops_int8 == pytest.approx(2 * peaks.tflops_fp32)


def test_efficiency_is_learned_per_backend_then_global_then_prior():
    doc = {"target": {"name": "x86-cpu", "device": "CPU"}, "artifacts": [
        {"status": "measured", "backend": "onnxruntime", "precision": "fp32", "latency_ms": {"p50": 10.0}, "roofline_ms": 2.0},
        {"status": "measured", "backend": "openvino", "precision": "int8", "latency_ms": {"p50": 4.0}, "roofline_ms": 2.0},
        {"status": "estimated", "backend": "openvino", "precision": "fp32", "latency_ms": {"p50": 1.0}, "roofline_ms": 1.0},
    ]}
    samples = samples_of(doc, "here")
    assert len(samples) == 2  # estimates never teach the estimator
    fitted = fit(samples)
    assert fitted["by_key"] == {"onnxruntime/fp32": 0.2, "openvino/int8": 0.5}
    assert fitted["global"] == pytest.approx((0.2 * 0.5) ** 0.5, abs=1e-4)
    assert choose(samples, "x86-cpu", "onnxruntime", "fp32") == (pytest.approx(0.2), "learned from 1 onnxruntime/fp32 run(s) measured on x86-cpu")
    assert "all backends" in choose(samples, "x86-cpu", "openvino", "fp32")[1]
    eff, source = choose(samples, "arm64-cpu", "onnxruntime", "int8", "CPU")
    assert "another CPU device" in source and eff == pytest.approx(fitted["global"], abs=1e-4)
    assert choose([], "jetson-orin", "tensorrt", "fp16") == (PRIOR_EFFICIENCY, pytest.approx("prior, not learned (set bench.efficiency_from to a measured bench.json)"))
    assert choose([Sample("jetson-orin", "tensorrt", "int8", 0.1, "f")], "jetson-orin", "tensorrt", "int8")[0] == pytest.approx(0.1)


def test_int8_row_on_a_device_with_only_an_int8_peak_times_its_float_ops_by_bytes(tmp_path):
    """intel-npu publishes 11 INT8 TOPS and no float peak: its int8 row is estimated (the Relu timed by its
    bytes, 2 per value: the NPU computes f16), its fp32 row stays pending with a sentence naming the missing
    figure, not a dict: the fp16 peak, the precision the NPU runs an fp32 IR in."""
    from edgedistill.bench.estimate.apply import estimate_row

    paths = {"onnx-fp32": embedder(tmp_path / "m.onnx", size=16, dim=32)}
    peaks = Peaks(None, None, 11.0, 119.5, "npu")
    int8 = {"name": "openvino-int8", "backend": "openvino", "precision": "int8", "status": "pending", "batch": 1, "notes": ""}
    assert estimate_row(int8, paths, peaks, "intel-npu", "NPU", [])
    costs = op_costs(paths["onnx-fp32"], 1, "fp16", int8_ops=True)
    expected = sum(c.bytes / 119.5e9 if c.precision != "int8" else max(c.flops / 11e12, c.bytes / 119.5e9) for c in costs) * 1e3
    assert int8["status"] == "estimated" and int8["estimate"]["roofline_ms"] == pytest.approx(expected, rel=1e-5)
    assert int8["estimate"]["float_ops_memory_bound"] == 1  # the Relu
    assert "timed by its bytes alone (no float peak in the profile)" in int8["notes"]
    fp32 = {"name": "openvino-fp32", "backend": "openvino", "precision": "fp32", "status": "pending", "batch": 1, "notes": "run on the device"}
    assert not estimate_row(fp32, paths, peaks, "intel-npu", "NPU", [])
    assert fp32["status"] == "pending" and "estimate" not in fp32
    assert fp32["notes"] == ("run on the device; no estimate: the target profile intel-npu gives no fp16 peak "
                             "(set peak_tflops_fp16 in it to estimate this row)")


def test_onnxruntime_on_a_gpu_runs_a_qdq_graph_unfused_in_fp32(tmp_path):
    """ONNX Runtime's CUDA provider has no QDQ -> int8 kernel fusion: the Q/DQ run as kernels and the MatMul
    in fp32, so its int8 row costs more than TensorRT's int8 engine of the same graph, not the same."""
    from edgedistill.bench.estimate.apply import estimate_row

    path = _qdq_matmul(tmp_path / "q.onnx")
    q, dq_x, dq_w, mm = op_costs(path, batch=1, qdq_fused=False)
    assert [c.op_type for c in (q, dq_x, dq_w)] == ["QuantizeLinear", "DequantizeLinear", "DequantizeLinear"]
    assert dq_w.bytes == 64 * 32 * 1 + 4 + 1 + 64 * 32 * 4  # int8 weights in, fp32 weights out, every run
    assert mm.precision == "fp32" and mm.bytes == 4 * (64 + 64 * 32 + 32)
    gpu = Peaks(30.3, 121.0, 242.5, 300.0, "l4")
    rows = {}
    for backend, device in (("tensorrt", "GPU"), ("onnxruntime", "GPU"), ("onnxruntime", "CPU")):
        row = {"name": f"{backend}-int8", "backend": backend, "precision": "int8", "status": "pending", "batch": 1, "notes": ""}
        assert estimate_row(row, {"onnxruntime-int8": path}, gpu, "nvidia-gpu", device, [])
        rows[backend, device] = row
    ort = rows["onnxruntime", "GPU"]
    assert ort["estimate"]["gop_int8"] == 0 and ort["estimate"]["float_precision"] == "fp32" and ort["estimate"]["qdq_fused"] is False
    assert ort["estimate"]["roofline_ms"] > 2 * rows["tensorrt", "GPU"]["estimate"]["roofline_ms"]
    assert "ONNX Runtime's CUDA provider runs Q/DQ as ops of their own and the matmuls in fp32" in ort["notes"]
    for fused in (rows["tensorrt", "GPU"], rows["onnxruntime", "CPU"]):  # TensorRT, and ORT's CPU provider (QLinear fusions)
        assert fused["estimate"]["gop_int8"] > 0 and "qdq_fused" not in fused["estimate"]
