"""New bench row fields (estimate, roofline_ms, throughput sweep, memory, probe accuracy) in every output."""

import json
from pathlib import Path

from rich.console import Console

from edgedistill.report import check_gates, make_report, merge_reports, render_html, render_markdown, summary_table
from tests.test_report_markdown import tables

DATA = Path(__file__).parent / "data"


def load(name: str) -> dict:
    return json.loads((DATA / f"report_{name}_bench.json").read_text())


def test_rows_keep_new_and_unknown_fields():
    bench = load("probe")
    bench["artifacts"][0]["energy_mj"] = 1.5  # a field the report has never heard of
    [row, *_] = merge_reports([bench])["rows"]
    art = bench["artifacts"][0]
    for key in ("estimate", "roofline_ms", "throughput", "memory", "runtime_settings", "energy_mj"):
        assert row[key] == art[key], key
    assert row["artifact"] == "onnx-fp32" and "name" not in row
    est = merge_reports([load("orin_estimates")])["rows"][0]
    assert est["estimate"]["efficiency_source"].startswith("prior") and est["latency_ms"]["p90"] is None


def test_artifact_fields_never_override_merge_fields():
    bench = load("probe")
    bench["artifacts"][0].update(target="spoofed", selected=True, build="x")
    row = merge_reports([bench])["rows"][0]
    assert row["target"] == "x86-cpu" and row["selected"] is False and row["build"] != "x"


def test_replaced_estimate_keeps_its_estimator_details():
    est = load("estimated")
    est["artifacts"][1]["estimate"] = {"roofline_ms": 0.4, "efficiency": 0.33}
    int8 = next(r for r in merge_reports([est, load("jetson")])["rows"] if r["artifact"] == "tensorrt-int8")
    assert int8["replaces"][0]["estimate"] == {"roofline_ms": 0.4, "efficiency": 0.33}


def test_markdown_shows_probe_sweep_memory_and_own_estimate_error():
    [table] = tables(render_markdown(make_report(load("probe"))))
    header, _, *rows = table
    for col in ("kNN top-1", "linear probe top-1", "peak mem MiB", "estimate (error)", "img/s (1 sync request)"):
        assert col in header
    cell = dict(zip(header, next(r for r in rows if "onnxruntime-int8" in r[1])))
    assert cell["kNN top-1"] == "81.2%" and cell["linear probe top-1"] == "85.4%"
    assert cell["img/s (1 sync request)"] == "b1 5635 / b4 10390"
    assert cell["peak mem MiB"] == "988 (+1.4)"
    assert cell["estimate (error)"] == "≈0.16 ms (-8.7%)"


def test_optional_columns_only_when_some_row_has_them():
    md = render_markdown(make_report(load("sample")))
    for col in ("kNN", "linear probe", "peak mem", "estimate (error)", "b1 "):
        assert col not in md


def test_estimated_rows_have_clean_dashes_for_missing_percentiles():
    md = render_markdown(make_report(load("orin_estimates")))
    [table] = tables(md)
    header, _, *rows = table
    fp16 = dict(zip(header, rows[0]))
    assert fp16["p50 ms"] == "≈0.070" and fp16["p90 ms"] == "—" and fp16["p99 ms"] == "—"
    assert fp16["img/s"] == "≈14300"
    assert "None" not in md and "≈—" not in md and "nan" not in md.lower()
    assert "- Selected: **none**: nothing measured on this target yet; estimates only" in md
    assert not any(r[0] == "★" for r in rows)
    html = render_html(make_report(load("orin_estimates")))
    assert "None" not in html and "≈—" not in html and 'class="row-selected"' not in html


def test_html_has_the_new_columns_and_stacks_multi_figure_cells():
    html = render_html(make_report(load("probe")))
    for text in ("<th>kNN top-1</th>", "<th>linear probe top-1</th>", "<th>peak mem MiB</th>",
                 "<th>estimate (error)</th>", "b1 5635<br>b4 10390", "988<br>(+1.4)", "(-8.7%)"):
        assert text in html, text


def test_estimates_only_gates_report_not_checked():
    out = check_gates(load("orin_estimates"), max_latency_ms=10, min_cosine=0.9, max_size_mb=50)
    assert len(out) == 3
    assert all("not checked" in v and "nothing measured on this target yet; estimates only" in v for v in out)
    assert "latency gate (p50 <= 10 ms)" in out[0] and "cosine gate (>= 0.9)" in out[1] and "size gate" in out[2]


def test_console_fits_100_columns_without_cutting_cells():
    docs = [make_report(load("probe")), make_report(load("orin_estimates")),
            merge_reports([load("probe"), load("orin_estimates")]),
            merge_reports([load("sample"), load("estimated"), load("jetson")])]
    for doc in docs:
        console = Console(record=True, width=100)
        console.print(summary_table(doc))
        text = console.export_text()
        assert "…" not in text, text
        assert max(len(line.rstrip()) for line in text.splitlines()) <= 100
    console = Console(record=True, width=100)
    console.print(summary_table(merge_reports([load("sample"), load("estimated"), load("jetson")])))
    text = console.export_text()
    assert "-20.8%" in text and "orin-agx-01" in text and "cosine" in text
