"""write_report (atomic, strict JSON), the console summary, and the stage's import boundary."""

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console
from rich.table import Table

from edgedistill.report import make_report, merge_reports, summary_table, write_report
from edgedistill.report import write as write_mod

DATA = Path(__file__).parent / "data"


def load(name: str) -> dict:
    return json.loads((DATA / f"report_{name}_bench.json").read_text())


def test_writes_three_files_and_nothing_else(tmp_path):
    report = make_report(load("sample"))
    paths = write_report(report, tmp_path / "report")
    assert set(paths) == {"json", "md", "html"}
    assert sorted(p.name for p in (tmp_path / "report").iterdir()) == ["report.html", "report.json", "report.md"]
    assert json.loads(paths["json"].read_text()) == report
    assert paths["md"].read_text().startswith("# edgedistill report")
    assert paths["html"].read_text().startswith("<!DOCTYPE html>")
    assert paths["json"].stat().st_mode & 0o044  # readable by others, unlike mkstemp's 0600


def test_bench_input_is_made_into_a_report(tmp_path):
    paths = write_report(load("sample"), tmp_path)
    doc = json.loads(paths["json"].read_text())
    assert doc["schema"] == "edgedistill.report/1" and doc["selected"]["artifact"] == "onnxruntime-int8"


def test_comparison_can_be_written(tmp_path):
    comp = merge_reports([load("estimated"), load("jetson")])
    paths = write_report(comp, tmp_path)
    assert json.loads(paths["json"].read_text())["schema"] == "edgedistill.comparison/1"


def test_non_finite_numbers_are_written_as_words_and_still_fail_their_budget(tmp_path):
    from edgedistill.report.select import select_artifact

    bench = load("sample")
    bench["artifacts"][0]["latency_ms"]["std"] = math.nan
    bench["_source"] = "x"
    chosen = make_report(bench)["selected"]["artifact"]
    fastest = next(a for a in bench["artifacts"] if a["name"] == chosen)
    fastest["fidelity"]["cosine_vs_fp32"] = math.nan  # the row selection would pick, now with a broken cosine
    paths = write_report(bench, tmp_path)
    text = paths["json"].read_text()
    doc = json.loads(text)  # strict JSON: json.loads would also take NaN, so check the text
    assert "NaN" not in text and doc["artifacts"][0]["latency_ms"]["std"] == "nan" and "_source" not in doc
    row = next(a for a in doc["artifacts"] if a["name"] == chosen)
    assert row["fidelity"]["cosine_vs_fp32"] == "nan"  # not null, which would read "not computed, not checked"
    assert doc["selected"]["artifact"] != chosen and select_artifact(doc)["artifact"] == doc["selected"]["artifact"]
    assert f"| {chosen} |" in paths["md"].read_text() and "nan" in paths["md"].read_text()


def test_render_failure_writes_nothing(tmp_path, monkeypatch):
    old = write_report(make_report(load("sample")), tmp_path)
    before = {k: p.read_text() for k, p in old.items()}

    def boom(_):
        raise RuntimeError("render failed")

    monkeypatch.setattr(write_mod, "render_html", boom)
    with pytest.raises(RuntimeError):
        write_report(make_report(load("jetson")), tmp_path)
    assert {k: p.read_text() for k, p in old.items()} == before


def test_failed_replace_leaves_no_temp_file(tmp_path, monkeypatch):
    def fail(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr("edgedistill.artifacts.os.replace", fail)  # the atomic write every report file goes through
    with pytest.raises(OSError):
        write_report(make_report(load("sample")), tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_summary_table_marks_the_selected_artifact():
    table = summary_table(make_report(load("sample")))
    assert isinstance(table, Table) and table.row_count == 5
    console = Console(record=True, width=200)
    console.print(table)
    text = console.export_text()
    assert "★" in text and "onnxruntime-int8" in text and "pending" in text
    selected_line = next(line for line in text.splitlines() if "★" in line)
    assert "onnxruntime-int8" in selected_line and "5.12" in selected_line


def test_summary_table_of_a_comparison_names_targets_and_estimates():
    table = summary_table(merge_reports([load("sample"), load("estimated")]))
    console = Console(record=True, width=240)
    console.print(table)
    text = console.export_text()
    assert "jetson-orin" in text and "≈1.90" in text and "estimated, not measured" in text


def test_report_stage_never_imports_runtimes_or_the_cli(tmp_path):
    code = (
        "import json, sys, pathlib\n"
        "import edgedistill.report as R\n"
        f"b = json.loads(pathlib.Path({str(DATA / 'report_sample_bench.json')!r}).read_text())\n"
        f"R.write_report(R.make_report(b), pathlib.Path({str(tmp_path)!r}))\n"  # not mkdtemp: it was left behind
        "R.check_gates(b, max_latency_ms=1, min_cosine=1, max_size_mb=1)\n"
        "R.summary_table(b)\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in {'torch', 'onnxruntime', 'openvino', 'tensorrt'}"
        " or m == 'edgedistill.cli')\n"
        "print(json.dumps(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []
