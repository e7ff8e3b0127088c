"""What the bench figures rest on, in every output: the batch they are at, the samples timed and why
timing stopped, and how img/s was measured (one sync request vs OpenVINO's THROUGHPUT-hint async queue)."""

import json
from html import escape
from pathlib import Path

from rich.console import Console

from edgedistill.report import check_gates, make_report, render_html, render_markdown, summary_table
from tests.test_report_html import parse
from tests.test_report_markdown import tables

DATA = Path(__file__).parent / "data"


def load(name: str) -> dict:
    return json.loads((DATA / f"report_{name}_bench.json").read_text())


def console_text(doc: dict) -> str:
    console = Console(record=True, width=100)
    console.print(summary_table(doc))
    return console.export_text()


def md_table(doc: dict) -> tuple[list[str], list[dict]]:
    [table] = tables(render_markdown(doc))[:1]
    header, _, *rows = table
    return header, [dict(zip(header, r)) for r in rows]


def at_batch(bench: dict, batch: int) -> dict:
    for art in bench["artifacts"]:
        art["batch"] = batch
    return bench


def test_a_batch_other_than_one_is_named_in_every_table_even_when_all_rows_share_it():
    report = make_report(at_batch(load("sample"), 4))
    header, rows = md_table(report)
    assert "batch" in header and {r["batch"] for r in rows} == {"4"}
    assert "batch" in parse(render_html(report)).tables[0][0]
    assert any(line.split()[:1] == ["artifact"] and "batch" in line.split() for line in console_text(report).splitlines())
    header, _ = md_table(make_report(load("sample")))  # batch 1 everywhere: no column, as before
    assert "batch" not in header


def test_the_latency_gate_says_which_batch_its_p50_is_at():
    [violation] = check_gates(make_report(at_batch(load("sample"), 4)), max_latency_ms=0.001, min_cosine=None, max_size_mb=None)
    assert violation.endswith("> 0.001 ms at batch 4"), violation


def with_samples(bench: dict, n: int, stopped_by: str | None) -> dict:
    for art in bench["artifacts"]:
        if isinstance(art.get("latency_ms"), dict):
            art["latency_ms"].update(iterations=n, **({"stopped_by": stopped_by} if stopped_by else {}))
    return bench


def test_few_samples_stopped_by_the_time_budget_are_said_and_p99_is_not_shown():
    report = make_report(with_samples(load("sample"), 5, "time_budget"))
    _, rows = md_table(report)
    measured = [r for r in rows if r["status"] == "measured"]
    assert {r["p99 ms"] for r in measured} == {"—"} and all(r["p90 ms"] != "—" for r in measured)
    line = ("timed: 5 samples per artifact, stopped by the time budget (bench.time_budget_s); p99 not shown below "
            "100 samples; p50, p90 and the selection rest on as few as 5 samples")
    assert line.replace("_", "\\_") in render_markdown(report)
    assert f'<p class="meta">{escape(line)}</p>' in render_html(report)
    assert "timed: 5 samples per artifact, stopped by the time budget" in " ".join(console_text(report).split())

    report = make_report(with_samples(load("sample"), 200, "iterations"))
    _, rows = md_table(report)
    assert all(r["p99 ms"] != "—" for r in rows if r["status"] == "measured")
    md = render_markdown(report)
    assert "timed: 200 samples per artifact, stopped by the iteration count (bench.iterations)" in md and "p99 not shown" not in md
    # bench.json written before stopped_by: the count alone; before iterations were recorded: no line
    assert "timed: 5 samples per artifact; p99 not shown" in render_markdown(make_report(with_samples(load("sample"), 5, None)))
    assert "timed:" not in render_markdown(make_report(load("sample")))


def async_openvino(bench: dict, streams: int = 2) -> dict:
    """The probe bench's OpenVINO rows as OpenVINO's THROUGHPUT-hint async queue records them."""
    for art in bench["artifacts"]:
        if art["backend"] == "openvino":
            for entry in art["throughput"]:
                entry.update(mode="async", performance_hint="THROUGHPUT", streams=streams, nireq=streams, requests=40)
    return bench


def test_img_s_says_whether_it_is_one_sync_request_or_an_async_queue():
    header, rows = md_table(make_report(load("probe")))  # bench.json before `mode`: every figure was one sync request
    assert "img/s (1 sync request)" in header
    assert "img/s: sync = one synchronous request at a time, batch × 1000 / its mean latency (OpenVINO under its LATENCY hint)" \
        in render_markdown(make_report(load("probe")))

    report = make_report(async_openvino(load("probe")))
    header, rows = md_table(report)
    cells = {r["artifact"].strip("*"): r["img/s"] for r in rows}
    assert cells["onnxruntime-int8"] == "b1 5635 sync / b4 10390 sync" and cells["openvino-fp32"] == "b1 656.0 async / b4 2088 async"
    note = ("async = OpenVINO's THROUGHPUT hint (2 streams, 2 requests in flight, 40 requests timed per batch size), "
            "images done / wall time, as benchmark_app -hint throughput measures")
    assert note.replace("_", "\\_") in render_markdown(report) and escape(note) in render_html(report)
    text = console_text(report)
    assert "656.0 async" in text and "5635 sync" in text and "…" not in text

    only_openvino = async_openvino(load("probe"))
    only_openvino["artifacts"] = [a for a in only_openvino["artifacts"] if a["backend"] == "openvino"]
    header, rows = md_table(make_report(only_openvino))
    assert "img/s (async, 2 streams)" in header and {r["img/s (async, 2 streams)"] for r in rows} >= {"b1 656.0 / b4 2088"}
    assert "(async)" in console_text(make_report(only_openvino))
