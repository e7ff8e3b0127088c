"""A profile without a memory bandwidth leaves rows pending and says so, as a missing compute peak does:
timed by compute alone, a row came out many times too fast."""

from __future__ import annotations

from edgedistill.bench.estimate.apply import estimate_row
from edgedistill.bench.estimate.graph_cost import op_costs
from edgedistill.bench.estimate.peaks import Peaks
from edgedistill.bench.estimate.roofline import roofline_ms

from tests.test_bench_fixtures import embedder


def test_without_bandwidth_there_is_no_roofline(tmp_path):
    costs = op_costs(embedder(tmp_path / "m.onnx"), 1)
    assert roofline_ms(costs, Peaks(82.6, 165.2, 660.6, 1008.0, "rtx4090"))[0] > 0
    assert roofline_ms(costs, Peaks(82.6, 165.2, 660.6, None, "rtx4090")) == (None, {"missing_bandwidth": True})
    # both missing: both named
    assert roofline_ms(costs, Peaks(None, None, 48.0, None, "npu")) == (None, {"missing_bandwidth": True, "missing_peak": "fp32"})


def test_a_row_without_bandwidth_stays_pending_naming_the_field(tmp_path):
    paths = {"onnx-fp32": embedder(tmp_path / "m.onnx")}
    row = {"name": "tensorrt-fp16", "backend": "tensorrt", "precision": "fp16", "status": "pending", "batch": 1, "notes": "build on the device"}
    assert not estimate_row(row, paths, Peaks(82.6, 165.2, 660.6, None, "rtx4090"), "rtx4090", "GPU", [])
    assert row["status"] == "pending" and "latency_ms" not in row
    assert row["notes"] == ("build on the device; no estimate: the target profile rtx4090 gives no memory bandwidth "
                            "(set bandwidth_gbs in it to estimate this row)")
    fp32 = {"name": "openvino-fp32", "backend": "openvino", "precision": "fp32", "status": "pending", "batch": 1, "notes": ""}
    assert not estimate_row(fp32, paths, Peaks(None, None, 48.0, None, "npu"), "lnl-npu", "NPU", [])
    assert fp32["notes"] == ("no estimate: the target profile lnl-npu gives no fp16 peak and no memory bandwidth "  # the NPU runs floats in f16
                             "(set peak_tflops_fp16 and bandwidth_gbs in it to estimate this row)")
