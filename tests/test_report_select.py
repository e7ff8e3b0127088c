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


def test_without_a_classifier_the_zero_shot_agreement_meets_the_top1_budget():
    """A CLIP student has no logits; benched with a zero-shot head, its zero-shot class's agreement with fp32 is checked."""
    bench = load("sample")
    for row in bench["artifacts"]:
        row["fidelity"].update(top1_agreement_vs_fp32=None, cosine_vs_fp32=0.999, zero_shot_agreement_vs_fp32=1.0)
    art(bench, "openvino-int8")["fidelity"]["zero_shot_agreement_vs_fp32"] = 0.875  # the fastest changes CLIP's decisions
    sel = select_artifact(bench)
    assert sel["artifact"] != "openvino-int8" and "not computed" not in sel["reason"]
    assert "zero-shot agreement >= 0.9)" in sel["reason"] and "top-1 agreement" not in sel["reason"]  # named as checked
    bench["target"]["min_top1_agreement"] = 1.01
    assert "zero-shot agreement 0.875 < 1.01" in select_artifact(bench)["reason"]
    for row in bench["artifacts"]:
        row["fidelity"]["zero_shot_agreement_vs_fp32"] = None  # no head: nothing checks the decisions, and the reason says so
    bench["target"]["min_top1_agreement"] = 0.99
    sel = select_artifact(bench)
    assert sel["artifact"] == "openvino-int8" and "top-1 agreement not computed for it" in sel["reason"]


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


def test_a_failed_reference_is_not_shipped_as_the_fallback():
    bench = load("sample")
    art(bench, "onnxruntime-fp32").update(status="failed", latency_ms=None)
    bench["target"]["min_cosine"] = 1.01
    sel = select_artifact(bench)
    assert sel["artifact"] is None and "fp32 reference to fall back to is failed too" in sel["reason"]


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


# Latency noise: byte-identical models differ by several percent between runs, so p50s within
# the target's selection_tolerance (default 5%) of the fastest are tied and the tie is decided
# by size, then cosine, then name.

def two_int8_within_tolerance(fast: str, slow: str) -> dict:
    """sample with onnxruntime-int8 (6.2 MB) and openvino-fp32 (22.8 MB) 3% apart, `fast` the faster."""
    bench = load("sample")
    art(bench, fast)["latency_ms"]["p50"] = 5.0
    art(bench, slow)["latency_ms"]["p50"] = 5.15
    return bench


@pytest.mark.parametrize("fast,slow", [("onnxruntime-int8", "openvino-fp32"), ("openvino-fp32", "onnxruntime-int8")])
def test_p50s_within_tolerance_tie_and_the_smaller_file_wins_either_way(fast, slow):
    sel = select_artifact(two_int8_within_tolerance(fast, slow))
    assert sel["artifact"] == "onnxruntime-int8"
    if fast == "openvino-fp32":  # the tie rule, not speed, decided: the reason says so
        assert "within 5% of the fastest (5 ms)" in sel["reason"] and "smaller file" in sel["reason"]
        assert "tied with openvino-fp32" in sel["reason"] and "within the budget (cosine >= 0.98" in sel["reason"]


@pytest.mark.parametrize("seed", range(20))
def test_identical_models_with_noisy_latency_always_select_the_same(seed):
    import random

    rng = random.Random(seed)
    bench = load("sample")
    twin = copy.deepcopy(art(bench, "onnxruntime-int8"))
    twin["name"] = "openvino-int8-twin"
    bench["artifacts"].append(twin)
    for a in (art(bench, "onnxruntime-int8"), twin):
        a["latency_ms"]["p50"] = 5.12 * (1 + rng.uniform(-0.02, 0.02))  # the same model, benched twice
    sel = select_artifact(bench)
    assert sel["artifact"] == "onnxruntime-int8"  # same size and cosine: the name decides, not the noise
    assert "name order" in sel["reason"] and "openvino-int8-twin" in sel["reason"]  # the reason says the tie decided


def test_tie_on_size_goes_to_the_higher_cosine_then_the_name():
    bench = two_int8_within_tolerance("openvino-fp32", "onnxruntime-int8")
    art(bench, "openvino-fp32")["size_mb"] = art(bench, "onnxruntime-int8")["size_mb"]
    sel = select_artifact(bench)
    assert sel["artifact"] == "openvino-fp32" and "higher cosine vs fp32" in sel["reason"]  # 0.99999 vs 0.9913
    art(bench, "openvino-fp32")["fidelity"]["cosine_vs_fp32"] = art(bench, "onnxruntime-int8")["fidelity"]["cosine_vs_fp32"]
    sel = select_artifact(bench)
    assert sel["artifact"] == "onnxruntime-int8" and "name order" in sel["reason"]


def test_outside_the_tolerance_the_fastest_wins_though_larger():
    bench = load("sample")
    art(bench, "openvino-fp32")["latency_ms"]["p50"] = 4.8  # 6.7% faster than onnxruntime-int8's 5.12
    sel = select_artifact(bench)
    assert sel["artifact"] == "openvino-fp32"
    assert sel["reason"].startswith("fastest measured artifact within the budget")


def test_tolerance_comes_from_the_target_record():
    bench = load("sample")
    art(bench, "openvino-fp32")["latency_ms"]["p50"] = 4.8
    bench["target"]["selection_tolerance"] = 0.10
    sel = select_artifact(bench)
    assert sel["artifact"] == "onnxruntime-int8" and "within 10% of the fastest (4.8 ms)" in sel["reason"]
    bench = two_int8_within_tolerance("openvino-fp32", "onnxruntime-int8")
    bench["target"]["selection_tolerance"] = 0  # the plain minimum
    assert select_artifact(bench)["artifact"] == "openvino-fp32"


def test_target_profile_validates_selection_tolerance(tmp_path):
    from edgedistill.targets import load_target

    assert load_target("x86-cpu").selection_tolerance == 0.05
    base = (Path(__file__).parent.parent / "targets" / "x86-cpu.yaml").read_text()
    good = tmp_path / "good.yaml"
    good.write_text(base + "selection_tolerance: 0.1\n")
    assert load_target(str(good)).selection_tolerance == 0.1
    for bad in ("1.5", "-0.01", ".nan", "true", "fast"):
        path = tmp_path / "bad.yaml"
        path.write_text(base + f"selection_tolerance: {bad}\n")
        with pytest.raises(EdgedistillError, match="selection_tolerance"):
            load_target(str(path))


# Non-finite fidelity: NaN is not below any limit, so it used to pass the budget.

@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_fidelity_fails_the_budget(value):
    bench = json.loads(json.dumps(load("sample")))
    art(bench, "onnxruntime-int8")["fidelity"]["cosine_vs_fp32"] = value
    bench = json.loads(json.dumps(bench))  # as read back from a bench.json with NaN/Infinity in it
    sel = select_artifact(bench)
    assert sel["artifact"] == "openvino-fp32"  # the next one within the budget
    art(bench, "openvino-fp32")["fidelity"]["top1_agreement_vs_fp32"] = value
    art(bench, "onnxruntime-fp32")["fidelity"]["top1_agreement_vs_fp32"] = value
    sel = select_artifact(bench)
    assert sel["artifact"] == "onnxruntime-fp32" and "fell back" in sel["reason"]
    assert f"onnxruntime-int8: cosine {value} is not finite" in sel["reason"]
    assert f"openvino-fp32: top-1 agreement {value} is not finite" in sel["reason"]


@pytest.mark.parametrize("value", [float("nan"), "inf", -0.5, 0.0, "fast"])
def test_a_latency_no_bench_writes_is_refused_not_selected(value):
    """A negative p50 passed as the fastest row (and crashed the HTML plot's log scale); NaN passed as no latency."""
    bench = load("sample")
    art(bench, "onnxruntime-int8")["latency_ms"]["p50"] = value
    with pytest.raises(EdgedistillError, match=rf"^bench document: row 'onnxruntime-int8' has latency_ms.p50 {value!r}, not a positive"):
        select_artifact(bench)
    art(bench, "onnxruntime-int8")["latency_ms"].update(p50=1.0, min=value)
    with pytest.raises(EdgedistillError, match="latency_ms.min"):
        make_report(bench)
    art(bench, "onnxruntime-int8")["latency_ms"].update(min=None, std=0.0)  # not computed, and a spread of 0: both fine
    assert select_artifact(bench)["artifact"]


# Rows measured off the target: on an OpenVINO GPU target, ONNX Runtime rows ran on the host CPU.

def on_intel_gpu() -> dict:
    """The sample bench as an intel-gpu bench writes it: OpenVINO rows on the GPU, ONNX Runtime ones on the CPU."""
    bench = load("sample")
    bench["target"].update(name="intel-gpu", device="GPU", backends=["openvino"])
    bench["artifacts"] = [a for a in bench["artifacts"] if a["backend"] != "tensorrt"]
    for a in bench["artifacts"]:
        a["device"] = "GPU" if a["backend"] == "openvino" else "CPU"
    return bench


def test_rows_measured_off_the_targets_device_never_compete():
    bench = on_intel_gpu()
    sel = select_artifact(bench)  # onnxruntime-int8 (CPU, 5.12 ms) is faster than openvino-fp32 (GPU, 6.31 ms)
    assert sel["artifact"] == "openvino-fp32"
    assert "onnxruntime-fp32, onnxruntime-int8 ran on the CPU, not the target's GPU, so they did not compete" in sel["reason"]
    for name in ("openvino-fp32", "openvino-int8"):
        art(bench, name)["status"] = "failed"
    sel = select_artifact(bench)  # the CPU rows are no stand-in for the GPU
    assert sel["artifact"] is None and sel["reason"].startswith("nothing measured on this target yet (2 failed)")


def test_the_fp32_fallback_off_the_targets_device_says_where_it_ran():
    bench = on_intel_gpu()
    bench["target"]["min_top1_agreement"] = 1.01
    sel = select_artifact(bench)
    assert sel["artifact"] == "onnxruntime-fp32"
    assert "onnxruntime-int8:" not in sel["reason"]  # only the target's own rows are listed as missing the budget
    assert "fell back to the fp32 reference, which ran on the CPU, not the target's GPU, so its latency is not the target's" in sel["reason"]
    assert sel["reason"].endswith("; onnxruntime-int8 ran on the CPU, not the target's GPU, so it did not compete")


def test_a_row_on_the_device_but_not_with_the_targets_backend_does_not_compete():
    bench = load("sample")
    bench["target"]["backends"] = ["openvino"]  # an OpenVINO-only CPU target
    sel = select_artifact(bench)
    assert sel["artifact"] == "openvino-fp32" and "ran with onnxruntime, not the target's openvino" in sel["reason"]
    del bench["target"]["backends"]  # a bench.json from before targets recorded their backends
    assert select_artifact(bench)["artifact"] == "onnxruntime-int8"


def test_a_miss_close_to_the_budget_is_not_shown_as_the_budget():
    bench = load("sample")
    bench["target"]["min_top1_agreement"] = 1.01  # nobody meets it: the reason lists each artifact's misses
    art(bench, "onnxruntime-int8")["fidelity"]["cosine_vs_fp32"] = 0.97996
    reason = select_artifact(bench)["reason"]
    assert "onnxruntime-int8: cosine 0.97996 < 0.98" in reason  # 4 digits would say 0.98 < 0.98
    assert "openvino-int8: cosine 0.9724 < 0.98" in reason  # plainly below: 4 digits do


def test_a_row_at_a_precision_the_target_does_not_run_is_not_selected():
    bench = load("sample")
    bench["target"]["precisions"] = ["fp32"]  # a profile that ships fp32 models only
    sel = select_artifact(bench)
    assert art(bench, sel["artifact"])["precision"] == "fp32"
    assert "onnxruntime-int8, openvino-int8 ran at int8, not one of the target's precisions (fp32), so they did not compete" in sel["reason"]
    del bench["target"]["precisions"]  # a bench.json from before targets recorded their precisions
    assert select_artifact(bench)["artifact"] == "onnxruntime-int8"
