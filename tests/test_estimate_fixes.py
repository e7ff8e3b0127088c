"""Estimator fixes: ops whose shapes shape inference leaves unknown, transferred efficiencies above 1,
OpenVINO's float precision, and corrupt bench.efficiency_from files."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgedistill.backends.openvino_backend import compile_config
from edgedistill.bench.estimate import graph_cost
from edgedistill.bench.estimate.apply import add_roofline, estimate_row, float_precision
from edgedistill.bench.estimate.efficiency import PRIOR_EFFICIENCY, Sample, choose, load_samples, samples_of
from edgedistill.bench.estimate.graph_cost import op_costs, summarize
from edgedistill.bench.estimate.peaks import Peaks
from edgedistill.bench.estimate.roofline import roofline_ms
from edgedistill.errors import EdgedistillError

from .test_bench_fixtures import embedder

ORIN = Peaks(5.3, 42.5, 85.0, 204.8, "jetson-orin")
INTEL_GPU = Peaks(4.6, 9.2, 18.0, 119.5, "intel-gpu")
INTEL_NPU = Peaks(None, None, 11.0, 119.5, "intel-npu")


def _window_reshape(path, shape_op: str = "Max", domain: str = ""):
    """x [n,48] -> Reshape(x, shape_op([-1,4,12], [-1,4,12])) -> MatMul w[12,8] -> y [n,4,8]. Shape inference cannot
    follow the reshape's target through Max (as Swin's window reshapes defeat it): the MatMul's input shape is unknown."""
    nodes = [helper.make_node(shape_op, ["c", "c"], ["shape"], domain=domain), helper.make_node("Reshape", ["x", "shape"], ["r"]),
             helper.make_node("MatMul", ["r", "w"], ["y"])]
    inits = [numpy_helper.from_array(np.ones((12, 8), np.float32), "w"), numpy_helper.from_array(np.array([-1, 4, 12], np.int64), "c")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 48])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 4, 8])], inits)
    opsets = [helper.make_opsetid("", 17)] + ([helper.make_opsetid(domain, 1)] if domain else [])
    model = helper.make_model(graph, opset_imports=opsets)
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def test_shapes_shape_inference_leaves_unknown_come_from_an_onnx_runtime_run(tmp_path):
    mm = next(c for c in op_costs(_window_reshape(tmp_path / "w.onnx"), batch=2) if c.op_type == "MatMul")
    assert mm.flops == 2 * (2 * 4 * 8) * 12 and not mm.unknown  # was 0: the input's shape was unknown
    assert mm.bytes == 4 * (2 * 4 * 12 + 12 * 8 + 2 * 4 * 8)
    assert "unknown_shapes" not in summarize(op_costs(tmp_path / "w.onnx", batch=2))


def test_a_graph_with_known_shapes_starts_no_onnx_runtime_session(tmp_path, monkeypatch):
    def refuse(*args):
        raise AssertionError("ONNX Runtime started for a graph whose shapes shape inference resolved")

    monkeypatch.setattr(graph_cost, "_runtime_shapes", refuse)
    assert summarize(op_costs(embedder(tmp_path / "m.onnx"), batch=4))["gflop_float"] > 0


def test_ops_with_shapes_nothing_resolves_leave_the_row_pending_with_a_note(tmp_path):
    """A graph ONNX Runtime cannot run either (an op of an unknown domain): no figure rather than one costing
    those ops at 0 FLOPs (a Swin lost 72% of its FLOPs that way)."""
    path = _window_reshape(tmp_path / "c.onnx", shape_op="WindowShape", domain="custom.ops")
    costs = op_costs(path, batch=1)
    assert sum(c.unknown for c in costs) == 2  # the custom op and the MatMul after the reshape
    assert roofline_ms(costs, ORIN) == (None, {"unknown_shapes": 2})
    row = {"name": "tensorrt-fp16", "backend": "tensorrt", "precision": "fp16", "status": "pending", "batch": 1, "notes": "build on the device"}
    assert not estimate_row(row, {"onnx-fp32": path}, ORIN, "jetson-orin", "GPU", [])
    assert row["status"] == "pending" and "latency_ms" not in row
    assert row["notes"].startswith("build on the device; no estimate: 2 ops with unknown shapes in the ONNX graph")
    measured = {"name": "onnx-fp32", "backend": "onnxruntime", "precision": "fp32", "status": "measured", "batch": 1}
    add_roofline([measured], {"onnx-fp32": path}, ORIN, "GPU")
    assert measured["roofline_ms"] is None  # teaches the efficiency nothing


def test_efficiency_transfers_only_within_a_device_family_and_capped_at_1():
    """This CPU's nominal-clock peak is low (turbo), so its learned efficiencies are ~1.2-1.3; transferred to a
    Jetson's published GPU peak they put the estimate below the device's roofline."""
    host = [Sample("x86-cpu", "onnxruntime", "fp32", 1.25, "b", "CPU"), Sample("x86-cpu", "openvino", "int8", 1.44, "b", "CPU")]
    eff, source = choose(host, "jetson-orin", "tensorrt", "fp16", "GPU")  # a CPU's runs say nothing of a GPU
    assert eff == PRIOR_EFFICIENCY and source.startswith("prior, not learned: bench.efficiency_from has runs on x86-cpu (CPU) only, not on a GPU")
    eff, source = choose(host, "arm64-cpu", "tensorrt", "fp16", "CPU")  # another CPU: transferred, capped
    assert eff == 1.0 and "learned on another CPU device (x86-cpu), transferred, capped at 1 from 1.34" in source
    eff, source = choose(host, "arm64-cpu", "onnxruntime", "fp32", "CPU")
    assert eff == 1.0 and "measured on other CPU devices, capped at 1 from 1.25" in source
    gpu = [Sample("nvidia-gpu", "tensorrt", "fp16", 0.4, "g", "GPU")]
    assert choose(gpu, "jetson-orin", "tensorrt", "fp16", "GPU.0") == (pytest.approx(0.4), "learned from 1 tensorrt/fp16 run(s) measured on other GPU devices")
    assert choose(gpu, "jetson-orin-dla", "tensorrt", "fp16", "DLA")[0] == PRIOR_EFFICIENCY
    # measured on the target itself: evidence, not a transfer, so kept as learned
    assert choose(host, "x86-cpu", "onnxruntime", "fp32", "CPU")[0] == pytest.approx(1.25)


def test_an_estimate_from_another_device_is_never_below_the_roofline(tmp_path):
    paths = {"onnx-fp32": embedder(tmp_path / "m.onnx")}
    arm = Peaks(0.154, 0.307, 0.614, 17.1, "arm64-cpu")
    for target, device, peaks, sample in (("jetson-orin", "GPU", ORIN, Sample("nvidia-gpu", "tensorrt", "fp16", 1.3, "g", "GPU")),
                                          ("arm64-cpu", "CPU", arm, Sample("x86-cpu", "onnxruntime", "fp32", 1.3, "b", "CPU"))):
        row = {"name": "tensorrt-fp16", "backend": "tensorrt", "precision": "fp16", "status": "pending", "batch": 1, "notes": ""}
        assert estimate_row(row, paths, peaks, target, device, [sample])
        assert row["latency_ms"]["p50"] >= row["estimate"]["roofline_ms"] and "capped at 1" in row["estimate"]["efficiency_source"]


def test_samples_record_the_device_their_row_ran_on():
    doc = {"target": {"name": "intel-gpu", "device": "GPU"}, "artifacts": [
        {"name": "openvino-int8", "status": "measured", "device": "GPU", "latency_ms": {"p50": 2.0}, "roofline_ms": 1.0},
        {"name": "onnx-fp32", "status": "measured", "device": "CPU", "latency_ms": {"p50": 2.0}, "roofline_ms": 1.0},
        {"name": "old", "status": "measured", "latency_ms": {"p50": 2.0}, "roofline_ms": 1.0}]}
    assert [s.device for s in samples_of(doc, "f")] == ["GPU", "CPU", "GPU"]


def test_openvino_float_ops_are_costed_in_the_precision_bench_compiles_with(tmp_path):
    """The GPU plugin gets INFERENCE_PRECISION_HINT=f32 (so floats are not fp16, 2 bytes); the NPU gets no hint and
    computes f16 (so not 4 bytes)."""
    for device in ("CPU", "GPU", "NPU", "AUTO"):  # pins compile_config and float_precision together
        config = compile_config(device, "auto", None)
        per_device = config.get("DEVICE_PROPERTIES") or {device: config}  # AUTO forwards a hint to each device
        hints = {c.get("INFERENCE_PRECISION_HINT") for c in per_device.values()}
        assert float_precision("int8", device, INTEL_GPU, "openvino") == ("fp32" if hints == {"f32"} else "fp16"), (device, config)
    assert float_precision("int8", "GPU", INTEL_GPU, "openvino") == "fp32"
    assert float_precision("int8", "GPU.1", INTEL_GPU, "openvino") == "fp32"
    assert float_precision("int8", "NPU", INTEL_NPU, "openvino") == "fp16"
    assert float_precision("fp32", "NPU", INTEL_NPU, "openvino") == "fp16"
    assert float_precision("fp16", "CPU", INTEL_GPU, "openvino") == "fp32"  # fp16 weights, f32 compute
    assert float_precision("int8", "GPU", ORIN, "tensorrt") == "fp16"  # TensorRT's int8 engines unchanged
    paths = {"onnx-fp32": embedder(tmp_path / "m.onnx")}
    for device, peaks, floats in (("GPU", INTEL_GPU, "fp32"), ("NPU", INTEL_NPU, "fp16")):
        row = {"name": "openvino-int8", "backend": "openvino", "precision": "int8", "status": "pending", "batch": 1, "notes": ""}
        assert estimate_row(row, paths, peaks, "intel", device, [])
        relu = next(c for c in op_costs(paths["onnx-fp32"], 1, floats, int8_ops=True) if c.op_type == "Relu")
        assert row["estimate"]["float_precision"] == floats and relu.bytes == 2 * 32 * (4 if floats == "fp32" else 2)


def _bench_doc(p50, roof):
    return {"target": {"name": "x86-cpu", "device": "CPU"}, "artifacts": [
        {"name": "onnx-fp32", "status": "measured", "backend": "onnxruntime", "precision": "fp32", "latency_ms": {"p50": 5.0}, "roofline_ms": 6.0},
        {"name": "openvino-int8", "status": "measured", "backend": "openvino", "precision": "int8", "latency_ms": {"p50": p50}, "roofline_ms": roof}]}


@pytest.mark.parametrize("p50, roof", [(float("inf"), 3.0), (float("nan"), 3.0), (True, 3.0), (2.0, float("inf")), (2.0, 1e-300),
                                       (2.0, 1e6), (0, 3.0), ("2", 3.0)])
def test_a_nonsense_figure_in_an_efficiency_from_file_is_refused_in_one_line(tmp_path, p50, roof):
    path = tmp_path / "bench.json"
    path.write_text(json.dumps(_bench_doc(p50, roof)))  # json writes Infinity and NaN, and reads them back
    with pytest.raises(EdgedistillError) as err:
        load_samples([path])
    assert "'openvino-int8'" in err.value.cause and "finite number from 1e-06 to 10" in err.value.cause and err.value.fix
    assert "\n" not in err.value.one_line()


def test_a_sane_efficiency_from_file_still_loads(tmp_path):
    path = tmp_path / "bench.json"
    path.write_text(json.dumps(_bench_doc(2.0, 3.0)))
    assert [s.efficiency for s in load_samples([path])] == [pytest.approx(1.2), pytest.approx(1.5)]
    doc = _bench_doc(2.0, None)  # measured where no peaks were known: skipped, not refused
    path.write_text(json.dumps(doc))
    assert len(load_samples([path])) == 1
    path.write_text("[]")
    with pytest.raises(EdgedistillError, match="not a bench document"):
        load_samples([path])
