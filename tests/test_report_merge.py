"""Loading bench/report documents and merging them, with device measurements replacing estimates."""

import json
import shutil
from pathlib import Path

import pytest

from edgedistill.errors import EdgedistillError
from edgedistill.report import load_reports, make_report, merge_reports, render_html, render_markdown

DATA = Path(__file__).parent / "data"


def load(name: str) -> dict:
    return json.loads((DATA / f"report_{name}_bench.json").read_text())


def rows_for(doc: dict, target: str) -> list[dict]:
    return [r for r in doc["rows"] if r["target"] == target]


def test_load_build_folder_prefers_report_then_bench(tmp_path):
    build = tmp_path / "build"
    (build / "bench").mkdir(parents=True)
    shutil.copy(DATA / "report_sample_bench.json", build / "bench" / "bench.json")
    [doc] = load_reports([build])
    assert doc["schema"] == "edgedistill.bench/1"
    assert doc["_source"].endswith("bench/bench.json")
    (build / "report").mkdir()
    (build / "report" / "report.json").write_text(json.dumps(make_report(load("sample"))))
    [doc] = load_reports([build])
    assert doc["schema"] == "edgedistill.report/1"


def test_a_folder_whose_report_is_a_comparison_falls_back_to_its_own_bench(tmp_path):
    """`edgedistill report A B --out A/report` puts a comparison in A/report/report.json; A is still A."""
    build = tmp_path / "build"
    (build / "bench").mkdir(parents=True)
    shutil.copy(DATA / "report_sample_bench.json", build / "bench" / "bench.json")
    (build / "report").mkdir()
    comparison = merge_reports([load("sample"), load("jetson")])
    (build / "report" / "report.json").write_text(json.dumps(comparison))
    [doc] = load_reports([build])
    assert doc["schema"] == "edgedistill.bench/1" and doc["_source"].endswith("bench/bench.json")
    own = load("sample")
    own["build"]["folder"] = str(build)  # named by the folder it was read from
    assert merge_reports([doc])["rows"] == merge_reports([own])["rows"]
    (build / "bench" / "bench.json").unlink()  # nothing of the build's own left
    with pytest.raises(EdgedistillError, match="report.json is already a comparison"):
        load_reports([build])
    with pytest.raises(EdgedistillError, match="already a comparison"):  # named as a file: no other file to take
        load_reports([build / "report" / "report.json"])


def test_load_json_files_directly():
    docs = load_reports([DATA / "report_sample_bench.json", DATA / "report_jetson_bench.json"])
    assert [d["target"]["name"] for d in docs] == ["x86-cpu", "jetson-orin"]


@pytest.mark.parametrize("content,match", [
    (None, "has no report/report.json"),
    ("{not json", "cannot read"),
    (json.dumps({"schema": "edgedistill.comparison/1", "rows": []}), "already a comparison"),
    (json.dumps({"schema": "other/1"}), "schema"),
])
def test_load_errors_are_user_errors(tmp_path, content, match):
    target = tmp_path
    if content is not None:
        target = tmp_path / "x.json"
        target.write_text(content)
    with pytest.raises(EdgedistillError, match=match):
        load_reports([target])


def test_a_negative_latency_is_refused_naming_the_file_and_row(tmp_path):
    bench = load("sample")
    bench["artifacts"][1]["latency_ms"]["p50"] = -0.5  # hand-edited: it would be selected as the fastest
    (tmp_path / "bench").mkdir()
    (tmp_path / "bench" / "bench.json").write_text(json.dumps(bench))
    name = bench["artifacts"][1]["name"]
    with pytest.raises(EdgedistillError, match=f"^{tmp_path / 'bench' / 'bench.json'}: row '{name}' has latency_ms.p50 -0.5"):
        load_reports([tmp_path])


def test_missing_path_is_a_user_error(tmp_path):
    with pytest.raises(EdgedistillError, match="does not exist"):
        load_reports([tmp_path / "nope"])


def test_single_report_becomes_one_row_per_artifact_with_status_host_and_target():
    comp = merge_reports([make_report(load("sample"))])
    assert comp["schema"] == "edgedistill.comparison/1"
    assert [r["artifact"] for r in comp["rows"]] == [a["name"] for a in load("sample")["artifacts"]]
    assert {r["status"] for r in comp["rows"]} == {"measured", "pending"}
    assert all(r["host"]["hostname"] == "ci-runner-7" and r["target"] == "x86-cpu" for r in comp["rows"])
    assert [r["artifact"] for r in comp["rows"] if r["selected"]] == ["onnxruntime-int8"]


def test_estimates_stay_estimates_without_a_device_bench():
    comp = merge_reports([load("sample"), load("estimated")])
    jetson = rows_for(comp, "jetson-orin")
    assert [r["status"] for r in jetson] == ["estimated", "estimated"]
    assert all(r["estimate_error_pct"] is None and r["replaces"] == [] for r in jetson)
    assert len(comp["rows"]) == 7


def test_device_measurement_replaces_estimate_and_records_the_error():
    comp = merge_reports(load_reports([DATA / "report_sample_bench.json", DATA / "report_estimated_bench.json",
                                       DATA / "report_jetson_bench.json"]))
    jetson = rows_for(comp, "jetson-orin")
    # One row per artifact: the measurement took the estimate's place; nothing estimated is left.
    assert [r["artifact"] for r in jetson] == ["tensorrt-fp16", "tensorrt-int8"]
    assert all(r["status"] == "measured" and r["host"]["hostname"] == "orin-agx-01" for r in jetson)
    fp16, int8 = jetson
    assert fp16["estimate_error_pct"] == pytest.approx((1.9 - 2.4) / 2.4 * 100, abs=0.01)
    assert int8["estimate_error_pct"] == pytest.approx((1.2 - 1.5) / 1.5 * 100, abs=0.01)
    assert fp16["latency_ms"]["p50"] == 2.4  # the measured figure, not the estimate
    [rep] = fp16["replaces"]
    assert rep["status"] == "estimated" and rep["host"] == "ci-runner-7" and rep["latency_ms"]["p50"] == 1.9
    # The x86 rows, including the pending TensorRT one of another target, are untouched.
    x86 = rows_for(comp, "x86-cpu")
    assert len(x86) == 5 and x86[-1]["status"] == "pending"
    # Both inputs share the build dir "runs/jetson": labels keep them apart.
    assert [s["build"] for s in comp["sources"]] == ["runs/demo", "runs/jetson@ci-runner-7", "runs/jetson@orin-agx-01"]
    assert int8["selected"] and not fp16["selected"]


def test_order_of_inputs_does_not_matter_for_replacement():
    comp = merge_reports([load("jetson"), load("estimated")])
    assert [r["status"] for r in comp["rows"]] == ["measured", "measured"]
    assert comp["rows"][0]["estimate_error_pct"] == pytest.approx(-20.83, abs=0.01)


def test_measurement_replaces_pending_without_an_error_figure():
    est = load("estimated")
    est["artifacts"][1].update(status="pending", latency_ms={"p50": None})
    comp = merge_reports([est, load("jetson")])
    int8 = next(r for r in comp["rows"] if r["artifact"] == "tensorrt-int8")
    assert int8["status"] == "measured" and int8["estimate_error_pct"] is None
    assert int8["replaces"][0]["status"] == "pending"


def test_remaining_steps_drop_what_the_device_measured():
    comp = merge_reports([load("sample"), load("estimated"), load("jetson")])
    assert len(comp["remaining_steps"]) == 1 and comp["remaining_steps"][0].startswith("tensorrt-fp16: TensorRT")
    only_host = merge_reports([load("estimated")])
    assert len(only_host["remaining_steps"]) == 2


def test_estimate_error_is_printed_in_markdown_and_html():
    comp = merge_reports([load("sample"), load("estimated"), load("jetson")])
    md = render_markdown(comp)
    assert "estimate (error)" in md
    assert "≈1.90 ms (-20.8%)" in md and "≈1.20 ms (-20.0%)" in md
    html = render_html(comp)
    assert "≈1.90 ms<br>(-20.8%)" in html  # estimate, then its error, on two lines


def test_merging_nothing_is_a_user_error():
    with pytest.raises(EdgedistillError):
        merge_reports([])


def test_comparison_passes_through_alone_but_cannot_be_merged_again():
    comp = merge_reports([load("sample")])
    assert merge_reports([comp]) == comp
    with pytest.raises(EdgedistillError, match="comparison"):
        merge_reports([comp, load("sample")])


def small_estimated(**build) -> dict:
    """The estimated jetson-orin bench of another model (vit_small, unless `build` says otherwise)."""
    doc = load("estimated")
    doc["build"] = {**doc["build"], "dir": "runs/small", "student": "vit_small_patch16_224", **build}
    return doc


@pytest.mark.parametrize("build", [{}, {"student": "vit_tiny_patch16_224", "teacher": "vit_base_patch16_224.dino"}])
def test_measurement_of_another_model_does_not_replace_an_estimate(build):
    comp = merge_reports([small_estimated(**build), load("jetson")])
    jetson = rows_for(comp, "jetson-orin")
    # Both models keep their rows: the estimates of one, the measurements of the other.
    assert [(r["build"], r["artifact"], r["status"]) for r in jetson] == [
        ("runs/small", "tensorrt-fp16", "estimated"), ("runs/small", "tensorrt-int8", "estimated"),
        ("runs/jetson", "tensorrt-fp16", "measured"), ("runs/jetson", "tensorrt-int8", "measured")]
    assert all(r["replaces"] == [] and r["estimate_error_pct"] is None for r in jetson)
    assert len(comp["remaining_steps"]) == 2  # the other model's measurement does nothing for these
    assert all("_model" not in r and "_input" not in r for r in comp["rows"])


def test_same_model_in_another_build_dir_still_replaces():
    est = load("estimated")
    est["build"]["dir"] = "runs/host-copy"
    comp = merge_reports([est, load("jetson")])
    assert [r["status"] for r in comp["rows"]] == ["measured", "measured"]
    assert [rep["build"] for rep in comp["rows"][0]["replaces"]] == ["runs/host-copy"]


def test_measurement_replaces_only_the_estimate_of_its_own_model():
    comp = merge_reports([small_estimated(), load("estimated"), load("jetson")])
    jetson = rows_for(comp, "jetson-orin")
    assert [(r["build"], r["status"]) for r in jetson] == [
        ("runs/small", "estimated"), ("runs/small", "estimated"),
        ("runs/jetson@orin-agx-01", "measured"), ("runs/jetson@orin-agx-01", "measured")]
    assert all([rep["build"] for rep in r["replaces"]] == ["runs/jetson@ci-runner-7"] for r in jetson[2:])


def test_the_pipelines_device_steps_go_once_the_device_measured_every_row_they_were_for():
    host = make_report(load("estimated"), ["copy the build folder 'runs/orin' to the jetson-orin device",
                                           "there: edgedistill bench runs/orin --target jetson-orin"])  # the pipeline's own steps
    assert merge_reports([host])["remaining_steps"] == host["remaining_steps"]
    assert merge_reports([host, load("jetson")])["remaining_steps"] == []
    one = load("jetson")
    one["artifacts"] = [a for a in one["artifacts"] if a["name"] == "tensorrt-int8"]  # fp16 still only estimated
    assert host["remaining_steps"][0] in merge_reports([host, one])["remaining_steps"]


def test_a_comparison_is_not_written_over_an_input_builds_own_report(tmp_path, capsys):
    from edgedistill.artifacts import Manifest
    from edgedistill.cli import main

    build = tmp_path / "build"
    (build / "bench").mkdir(parents=True)
    shutil.copy(DATA / "report_sample_bench.json", build / "bench" / "bench.json")
    Manifest(build).save()
    others = str(DATA / "report_jetson_bench.json")
    assert main(["report", str(build), others, "--out", str(build / "report")]) == 2
    assert "own report folder" in capsys.readouterr().err and not (build / "report").exists()
    assert main(["report", str(build), others, "--out", str(tmp_path / "comparison")]) == 0
    assert main(["report", str(build), "--out", str(build / "report")]) == 0  # its own report, rewritten: fine


def _job_folder(root: Path, name: str, data: str, report: bool = False) -> None:
    """A build folder as a CI job leaves it: every job ran with --out build, so bench.json says build."""
    doc = load(data)
    doc["build"]["dir"] = "build"
    (root / name / "bench").mkdir(parents=True)
    (root / name / "bench" / "bench.json").write_text(json.dumps(doc))
    if report:
        (root / name / "report").mkdir()
        (root / name / "report" / "report.json").write_text(json.dumps(make_report(doc)))


def test_downloaded_build_folders_are_named_as_given_not_by_where_bench_ran(tmp_path, monkeypatch, capsys):
    """CI artifacts downloaded into x86/, host/ and orin/ (or a folder copied or restored from a cache)
    keep build.dir of the folder bench ran in; reports name them by the paths passed."""
    from edgedistill.cli import main

    monkeypatch.chdir(tmp_path)
    _job_folder(tmp_path, "x86", "sample", report=True)
    _job_folder(tmp_path, "host", "estimated")
    _job_folder(tmp_path, "orin", "jetson")
    comp = merge_reports(load_reports([Path("x86"), Path("host/bench/bench.json"), Path("orin")]))
    assert [s["build"] for s in comp["sources"]] == ["x86", "host", "orin"]  # no @host: nothing collides
    assert [s["build"] for s in comp["selected"]] == ["x86", "host", "orin"]
    jetson = rows_for(comp, "jetson-orin")
    assert [r["build"] for r in jetson] == ["orin", "orin"]  # the device's rows still replace the host's estimates
    assert [rep["build"] for r in jetson for rep in r["replaces"]] == ["host", "host"]
    assert main(["report", "x86", "orin/bench/bench.json", "--out", "cmp"]) == 0
    out = capsys.readouterr().out
    assert "- Selected for x86: **" in out and "- build x86, target x86-cpu" in out and "build build" not in out
    # The folder is recorded beside where bench ran, in what --out writes too.
    assert json.loads((tmp_path / "cmp" / "report.json").read_text())["sources"][0]["build"] == "x86"
    [doc] = load_reports([Path("x86")])
    assert doc["build"]["dir"] == "build" and doc["build"]["folder"] == "x86"


def test_host_and_number_are_added_only_where_folder_labels_collide(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _job_folder(tmp_path, "a", "estimated")
    _job_folder(tmp_path / "b", "a", "jetson")  # b/a: another folder of the same name on another host
    _job_folder(tmp_path, "c", "sample")
    docs = load_reports([Path("a"), Path("a/bench/bench.json"), Path("b/a"), Path("c")])
    assert [s["build"] for s in merge_reports(docs)["sources"]] == ["a@ci-runner-7#1", "a@ci-runner-7#2", "b/a", "c"]
