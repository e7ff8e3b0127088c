"""CI gates: each violated and passing; estimated latencies never pass or fail silently."""

import json
from pathlib import Path

import pytest

from edgedistill.report import check_gates, make_report, merge_reports

DATA = Path(__file__).parent / "data"
NO_GATES = dict(max_latency_ms=None, min_cosine=None, max_size_mb=None)


def load(name: str) -> dict:
    return json.loads((DATA / f"report_{name}_bench.json").read_text())


@pytest.fixture
def report():
    return make_report(load("sample"))  # selects onnxruntime-int8: 5.12 ms, cosine 0.9913, 6.2 MB


def gates(**kw):
    return {**NO_GATES, **kw}


def test_no_gates_no_violations(report):
    assert check_gates(report, **NO_GATES) == []


def test_all_gates_pass(report):
    assert check_gates(report, max_latency_ms=20, min_cosine=0.98, max_size_mb=50) == []


@pytest.mark.parametrize("kw,expect", [
    (dict(max_latency_ms=5.0), "measured p50 latency 5.12 ms > 5 ms"),
    (dict(min_cosine=0.995), "cosine vs fp32 0.9913 < 0.995"),
    (dict(max_size_mb=5.0), "size 6.2 MB > 5 MB"),
])
def test_each_gate_violated(report, kw, expect):
    [violation] = check_gates(report, **gates(**kw))
    assert expect in violation
    assert "x86-cpu/onnxruntime-int8" in violation and "\n" not in violation


@pytest.mark.parametrize("kw", [dict(max_latency_ms=5.12), dict(min_cosine=0.9913), dict(max_size_mb=6.2)])
def test_each_gate_passes_at_its_limit(report, kw):
    assert check_gates(report, **gates(**kw)) == []


def test_all_violations_are_listed(report):
    assert len(check_gates(report, max_latency_ms=1, min_cosine=0.999, max_size_mb=1)) == 3


def test_named_artifact(report):
    assert check_gates(report, **gates(min_cosine=0.98), artifact="onnxruntime-fp32") == []
    [v] = check_gates(report, **gates(min_cosine=0.98), artifact="openvino-int8")
    assert "openvino-int8" in v and "0.9724 < 0.98" in v


def test_unknown_artifact_names_the_known_ones(report):
    [v] = check_gates(report, **gates(max_size_mb=50), artifact="tflite-int8")
    assert "'tflite-int8' is not in the report" in v and "onnxruntime-int8" in v


@pytest.mark.parametrize("limit", [100.0, 0.5])
def test_estimated_latency_never_passes_or_fails_a_latency_gate(limit):
    # 1.2 ms estimated: under 100 ms and over 0.5 ms; neither may count.
    [v] = check_gates(load("estimated"), **gates(max_latency_ms=limit), artifact="tensorrt-int8")
    assert "not checked" in v and "only an estimated p50 (1.20 ms)" in v
    assert "edgedistill bench" in v


def test_pending_artifact_cannot_pass_gates(report):
    out = check_gates(report, max_latency_ms=20, min_cosine=0.9, max_size_mb=50, artifact="tensorrt-fp16")
    assert len(out) == 3
    assert "no measured latency (status pending)" in out[0]
    assert "no cosine vs fp32" in out[1] and "size unknown" in out[2]


def test_nothing_selected_is_a_violation_when_gating():
    [v] = check_gates(load("estimated"), **gates(max_latency_ms=10))
    assert "no artifact selected" in v and "jetson-orin" in v


def test_comparison_gates_each_selected_artifact_including_device_measurements():
    comp = merge_reports([load("sample"), load("estimated"), load("jetson")])
    # The host build of jetson-orin selected nothing (estimates only); the Jetson's bench did.
    assert check_gates(comp, max_latency_ms=6, min_cosine=0.98, max_size_mb=50) == []
    [v] = check_gates(comp, **gates(max_latency_ms=2))
    assert "x86-cpu/onnxruntime-int8" in v and "5.12 ms > 2 ms" in v
    host_v, device_v = check_gates(comp, **gates(max_latency_ms=1))
    assert "x86-cpu/onnxruntime-int8" in host_v
    assert "jetson-orin/tensorrt-int8" in device_v and "host orin-agx-01" in device_v and "1.50 ms > 1 ms" in device_v


def test_comparison_with_estimate_only_device_build_reports_it():
    comp = merge_reports([load("sample"), load("estimated")])
    out = check_gates(comp, **gates(max_latency_ms=20))
    assert len(out) == 1 and "jetson-orin" in out[0] and "no artifact selected" in out[0]


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_cosine_fails_the_cosine_gate(value):
    report = make_report(load("sample"))
    # Selected on its own figures, then the cosine is found NaN (e.g. a report edited or re-read).
    next(a for a in report["artifacts"] if a["name"] == "onnxruntime-int8")["fidelity"]["cosine_vs_fp32"] = value
    report = json.loads(json.dumps(report))
    [v] = check_gates(report, **gates(min_cosine=0.98))
    assert "x86-cpu/onnxruntime-int8" in v and "not finite" in v and "cosine" in v


def test_non_finite_size_fails_the_size_gate(report):
    next(a for a in report["artifacts"] if a["name"] == "onnxruntime-int8")["size_mb"] = float("nan")
    [v] = check_gates(report, **gates(max_size_mb=50))
    assert "size is nan, not finite" in v


def test_nan_p50_is_no_measured_latency(report):
    next(a for a in report["artifacts"] if a["name"] == "onnxruntime-int8")["latency_ms"]["p50"] = float("nan")
    [v] = check_gates(report, **gates(max_latency_ms=20))
    assert "not checked: no measured latency (status measured)" in v


def test_a_nan_cosine_is_never_selected_so_the_gate_checks_the_real_choice():
    bench = load("sample")
    next(a for a in bench["artifacts"] if a["name"] == "onnxruntime-int8")["fidelity"]["cosine_vs_fp32"] = float("nan")
    report = make_report(bench)
    assert report["selected"]["artifact"] == "openvino-fp32"
    assert check_gates(report, **gates(min_cosine=0.98)) == []


def test_another_models_measurement_does_not_cover_a_build_that_selected_nothing():
    # vit_small was only estimated for the Jetson; the Jetson measured vit_tiny. The vit_small
    # build's gates cannot be checked, whatever vit_tiny measured.
    small = load("estimated")
    small["build"] = {"dir": "runs/small", "student": "vit_small_patch16_224", "teacher": "efficientnet_lite0.offline"}
    out = check_gates(merge_reports([small, load("jetson")]), **gates(max_latency_ms=6))
    assert len(out) == 1 and "jetson-orin (build runs/small)" in out[0] and "no artifact selected" in out[0]


def on_intel_gpu() -> dict:
    """The sample bench as an intel-gpu bench writes it: OpenVINO rows on the GPU, ONNX Runtime ones on the host CPU."""
    bench = load("sample")
    bench["target"].update(name="intel-gpu", device="GPU", backends=["openvino"])
    for a in bench["artifacts"]:
        a["device"] = "GPU" if a["backend"] == "openvino" else "CPU"
    return bench


def test_a_latency_measured_off_the_targets_device_neither_passes_nor_fails_a_latency_gate():
    report = make_report(on_intel_gpu())
    assert check_gates(report, **gates(max_latency_ms=7)) == []  # openvino-fp32, 6.31 ms on the GPU
    [v] = check_gates(report, **gates(max_latency_ms=100), artifact="onnxruntime-int8")
    assert "latency gate (p50 <= 100 ms) not checked: the artifact ran on the CPU, not the target's GPU" in v
    bench = on_intel_gpu()
    bench["target"]["min_top1_agreement"] = 1.01  # nobody meets it: the CPU's fp32 reference is the fallback
    report = make_report(bench)
    assert report["selected"]["artifact"] == "onnxruntime-fp32"
    [v] = check_gates(report, **gates(max_latency_ms=100, min_cosine=0.98, max_size_mb=50))
    assert "intel-gpu/onnxruntime-fp32" in v and "not checked: the artifact ran on the CPU" in v


def test_a_value_just_past_its_limit_is_shown_past_it():
    report = make_report(load("sample"))
    int8 = next(a for a in report["artifacts"] if a["name"] == "onnxruntime-int8")
    int8.update(size_mb=6.2001)
    int8["fidelity"]["cosine_vs_fp32"] = 0.97996
    int8["latency_ms"]["p50"] = 5.004
    cos, lat, size = (check_gates(report, **gates(**kw)) for kw in
                      (dict(min_cosine=0.98), dict(max_latency_ms=5), dict(max_size_mb=6.2)))
    assert "cosine vs fp32 0.97996 < 0.98" in cos[0]  # not "0.9800 < 0.98"
    assert "measured p50 latency 5.004 ms > 5 ms" in lat[0]  # not "5.00 ms > 5 ms"
    assert "size 6.2001 MB > 6.2 MB" in size[0]


@pytest.mark.parametrize("key,option,what", [("task_top1", "min_task_top1", "task top-1"),
                                              ("zero_shot_top1", "min_zero_shot_top1", "zero-shot top-1")])
def test_labelled_top1_gates_check_their_figure_and_refuse_a_row_without_one(report, key, option, what):
    """The sample rows have no task or zero-shot top-1 (no student classes, no zero-shot head): the gate cannot pass
    quietly; with one it compares."""
    missing = check_gates(report, **gates(**{option: 0.5}))
    assert len(missing) == 1 and f"{what} gate (>= 0.5) not checked: no {what}" in missing[0]
    scored = json.loads(json.dumps(report))
    for row in scored["artifacts"]:
        row.setdefault("fidelity", {})[key] = 0.8125
    assert check_gates(scored, **gates(**{option: 0.8})) == []
    below = check_gates(scored, **gates(**{option: 0.85}))
    assert len(below) == 1 and "onnxruntime-int8" in below[0] and f"{what} 0.8125 < 0.85" in below[0]
    other = "min_zero_shot_top1" if option == "min_task_top1" else "min_task_top1"
    assert len(check_gates(scored, **gates(**{option: 0.8, other: 0.5}))) == 1  # each gate reads its own figure
