"""The selection rule of docs/report-schema.md, and make_report around it."""

import copy
import json
from pathlib import Path

import pytest

from edgedistill.errors import EdgedistillError
from edgedistill.report import make_report, select_artifact

DATA = Path(__file__).parent / "data"


def load(name: str) -> dict:
    return json.loads((DATA / f"report_{name}_bench.json").read_text())


def art(doc: dict, name: str) -> dict:
    return next(a for a in doc["artifacts"] if a["name"] == name)


def test_fastest_within_budget_wins_over_faster_artifact_outside_it():
    bench = load("sample")
    # openvino-int8 is the fastest (3.78 ms) but misses both budgets; onnxruntime-int8 is next.
    sel = select_artifact(bench)
    assert sel["artifact"] == "onnxruntime-int8"
    assert "within the budget" in sel["reason"] and "cosine >= 0.98" in sel["reason"]


def test_budget_comes_from_the_target():
    bench = load("sample")
    bench["target"]["min_cosine"] = 0.9
    bench["target"]["min_top1_agreement"] = 0.8
    assert select_artifact(bench)["artifact"] == "openvino-int8"
    bench["target"]["min_cosine"] = 0.999995  # only the exact fp32 reference (1.0) is left
    assert select_artifact(bench)["artifact"] == "onnxruntime-fp32"


def test_missing_budget_means_fastest_measured():
    bench = load("sample")
    del bench["target"]["min_cosine"], bench["target"]["min_top1_agreement"]
    sel = select_artifact(bench)
    assert sel["artifact"] == "openvino-int8"
    assert "no fidelity budget" in sel["reason"]


def test_no_artifact_within_budget_falls_back_to_reference_and_names_the_failures():
    bench = load("sample")
    bench["target"]["min_top1_agreement"] = 1.01
    sel = select_artifact(bench)
    assert sel["artifact"] == "onnxruntime-fp32"
    assert "fell back to the fp32 reference" in sel["reason"]
    assert "top-1 agreement 0.875 < 1.01" in sel["reason"]  # openvino-int8's miss, by name
    assert "openvino-int8" in sel["reason"] and "onnxruntime-int8" in sel["reason"]


def test_cosine_failure_is_named():
    bench = load("sample")
    for name in ("onnxruntime-fp32", "openvino-fp32", "onnxruntime-int8"):
        art(bench, name)["fidelity"]["cosine_vs_fp32"] = 0.5
    sel = select_artifact(bench)
    assert sel["artifact"] == "onnxruntime-fp32"  # the reference fallback, though it fails too
    assert "cosine 0.5 < 0.98" in sel["reason"]


def test_null_fidelity_does_not_disqualify_but_is_reported():
    bench = load("sample")
    art(bench, "openvino-int8")["fidelity"].update(cosine_vs_fp32=None, top1_agreement_vs_fp32=None)
    sel = select_artifact(bench)
    assert sel["artifact"] == "openvino-int8"
    assert "not computed" in sel["reason"] and "cosine" in sel["reason"]


def test_only_measured_artifacts_qualify():
    bench = load("sample")
    fast = copy.deepcopy(art(bench, "onnxruntime-int8"))
    for status in ("estimated", "pending", "failed"):
        fast.update(name=f"fast-{status}", status=status, latency_ms={"p50": 0.01, "p90": 0.02, "p99": 0.03})
        bench["artifacts"].append(copy.deepcopy(fast))
    assert select_artifact(bench)["artifact"] == "onnxruntime-int8"


def test_measured_without_latency_is_skipped():
    bench = load("sample")
    art(bench, "onnxruntime-int8")["latency_ms"]["p50"] = None
    assert select_artifact(bench)["artifact"] == "openvino-fp32"


def test_estimates_only_selects_nothing():
    sel = select_artifact(load("estimated"))
    assert sel == {"artifact": None, "reason": "nothing measured on this target yet; estimates only"}


def with_fp32_reference(bench: dict, name: str, status: str) -> dict:
    """bench plus an fp32 ONNX Runtime row copied from its first artifact, in the given status."""
    ref = copy.deepcopy(bench["artifacts"][0])
    ref.update(name=name, backend="onnxruntime", precision="fp32", status=status)
    bench["artifacts"].append(ref)
    return bench


def test_estimates_only_never_stars_the_fp32_reference():
    # A real host build for a Jetson: estimated TensorRT rows plus an unmeasured fp32 reference.
    bench = with_fp32_reference(load("orin_estimates"), "onnx-fp32", "estimated")
    sel = select_artifact(bench)
    assert sel == {"artifact": None, "reason": "nothing measured on this target yet; estimates only"}
    report = make_report(bench)
    assert report["selected"]["artifact"] is None


def test_nothing_measured_names_the_statuses_when_not_only_estimates():
    bench = with_fp32_reference(load("estimated"), "onnxruntime-fp32", "pending")
    sel = select_artifact(bench)
    assert sel["artifact"] is None  # no fallback to a reference nobody measured
    assert sel["reason"] == "nothing measured on this target yet (2 estimated, 1 pending)"


def test_measured_reference_is_still_the_fallback_when_the_budget_is_missed():
    bench = load("estimated")
    ref = copy.deepcopy(bench["artifacts"][0])
    ref.update(name="onnxruntime-fp32", backend="onnxruntime", precision="fp32", status="measured",
               fidelity={"cosine_vs_fp32": 1.0, "top1_agreement_vs_fp32": 1.0})
    bench["artifacts"].append(ref)
    bench["target"]["min_cosine"] = 1.01
    sel = select_artifact(bench)
    assert sel["artifact"] == "onnxruntime-fp32" and "fell back to the fp32 reference" in sel["reason"]


def test_no_reference_to_fall_back_to():
    bench = load("sample")
    bench["artifacts"] = [a for a in bench["artifacts"] if a["name"] != "onnxruntime-fp32"]
    bench["target"]["min_cosine"] = 1.01
    sel = select_artifact(bench)
    assert sel["artifact"] is None and "no fp32 ONNX Runtime reference to fall back to" in sel["reason"]


def test_real_bench_with_new_row_fields_selects_as_before():
    sel = select_artifact(load("probe"))
    assert sel["artifact"] == "onnxruntime-int8" and "within the budget" in sel["reason"]


def test_ties_go_to_the_smaller_file():
    bench = load("sample")
    art(bench, "openvino-fp32")["latency_ms"]["p50"] = 5.12  # same as onnxruntime-int8, 22.8 MB vs 6.2 MB
    assert select_artifact(bench)["artifact"] == "onnxruntime-int8"


def test_make_report_adds_selection_and_steps_without_touching_the_bench():
    bench = load("sample")
    before = copy.deepcopy(bench)
    report = make_report(bench)
    assert bench == before
    assert report["schema"] == "edgedistill.report/1"
    assert report["selected"]["artifact"] == "onnxruntime-int8"
    assert report["artifacts"] == bench["artifacts"] and report["host"] == bench["host"]
    assert len(report["remaining_steps"]) == 1 and report["remaining_steps"][0].startswith("tensorrt-fp16:")


def test_make_report_keeps_given_steps_and_drops_loader_keys():
    bench = load("sample")
    bench["_source"] = "/somewhere/bench.json"
    report = make_report(bench, ["on the Jetson: edgedistill compile runs/jetson/trt_bundle"])
    assert report["remaining_steps"] == ["on the Jetson: edgedistill compile runs/jetson/trt_bundle"]
    assert "_source" not in report
    assert make_report(bench, [])["remaining_steps"] == []


def test_make_report_rejects_other_documents():
    with pytest.raises(EdgedistillError, match="schema"):
        make_report({"schema": "something/9", "artifacts": []})
