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


def test_no_measured_and_no_reference_selects_none():
    sel = select_artifact(load("estimated"))
    assert sel["artifact"] is None
    assert "no measured artifact" in sel["reason"] and "2 estimated" in sel["reason"]
    assert "no fp32 ONNX Runtime reference" in sel["reason"]


def test_reference_fallback_even_when_not_measured():
    bench = load("estimated")
    ref = copy.deepcopy(bench["artifacts"][0])
    ref.update(name="onnxruntime-fp32", backend="onnxruntime", precision="fp32", status="pending")
    bench["artifacts"].append(ref)
    assert select_artifact(bench)["artifact"] == "onnxruntime-fp32"


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
