"""report.html: self-contained (plots as data: PNGs, no URLs or scripts), tables, escaping."""

import base64
import io
import json
from html.parser import HTMLParser
from pathlib import Path

import pytest
from PIL import Image

from edgedistill.report import make_report, merge_reports, render_html

DATA = Path(__file__).parent / "data"


def load(name: str) -> dict:
    return json.loads((DATA / f"report_{name}_bench.json").read_text())


class Page(HTMLParser):
    """Collects tags, attributes, table cells and text."""

    def __init__(self):
        super().__init__()
        self.tags, self.attrs, self.text = [], [], []
        self.tables, self._cell, self._row = [], None, None

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.attrs.extend((tag, k, v or "") for k, v in attrs)
        if tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self._row = []
            self.tables[-1].append(self._row)
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self._row.append("".join(self._cell).strip())
            self._cell = None

    def handle_data(self, data):
        self.text.append(data)
        if self._cell is not None:
            self._cell.append(data)


def parse(html: str) -> Page:
    page = Page()
    page.feed(html)
    page.close()
    return page


@pytest.fixture(scope="module")
def comparison_html():
    return render_html(merge_reports([load("sample"), load("estimated"), load("jetson")]))


def images(page: Page) -> list[str]:
    return [v for tag, k, v in page.attrs if tag == "img" and k == "src"]


def test_every_plot_is_an_embedded_png(comparison_html):
    page = parse(comparison_html)
    srcs = images(page)
    assert len(srcs) == 3  # a latency-vs-fidelity scatter per target + the latency bars
    for src in srcs:
        assert src.startswith("data:image/png;base64,")
        img = Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1])))
        assert img.format == "PNG" and img.width > 300 and img.height > 150


def test_nothing_is_fetched_from_anywhere(comparison_html):
    page = parse(comparison_html)
    for tag, key, value in page.attrs:
        if key in ("src", "href", "srcset", "action", "data", "poster"):
            assert not value.lower().startswith(("http:", "https:", "//")), (tag, key, value)
    assert not {"script", "link", "iframe", "object", "embed"} & set(page.tags)
    assert "http://" not in comparison_html and "https://" not in comparison_html
    assert "@import" not in comparison_html and "url(" not in comparison_html
    assert page.tags.count("style") == 1


def test_tables_per_target_with_all_columns(comparison_html):
    page = parse(comparison_html)
    assert len(page.tables) == 2
    x86, jetson = page.tables
    header = x86[0]
    for col in ("artifact", "backend", "precision", "status", "p50 ms", "p90 ms", "p99 ms", "img/s (1 sync request)",
                "size MB", "cosine vs fp32", "top-1 vs fp32", "top-1 vs teacher"):
        assert col in header
    assert len(x86) == 6 and len(jetson) == 3
    assert "estimate (error)" in jetson[0] and "≈1.90 ms(-20.8%)" in jetson[1]  # one figure per line in HTML
    # Build and host are named under each artifact in a comparison.
    assert jetson[1][1] == "tensorrt-fp16runs/jetson@orin-agx-01"


def test_selected_and_estimated_rows_are_marked():
    html = render_html(make_report(load("estimated")))
    assert html.count('class="row-estimated"') == 2
    assert html.count('badge-estimated">estimated<') == 2
    assert "Estimated rows are not measurements" in html
    sample = render_html(make_report(load("sample")))
    assert sample.count('<tr class="row-selected">') == 1
    page = parse(sample)
    selected_row = next(r for r in page.tables[0][1:] if r[0] == "★")
    assert selected_row[1] == "onnxruntime-int8"


def test_strings_are_escaped():
    bench = load("sample")
    bench["artifacts"][1]["name"] = 'int8 <script>alert("x")</script>'
    bench["artifacts"][4]["notes"] = "<img src=https://evil.example/x.png> & more"
    bench["host"]["cpu_model"] = "<b>CPU</b>"
    html = render_html(make_report(bench))
    page = parse(html)
    assert "script" not in page.tags and "b" not in page.tags
    assert len(images(page)) == 2  # only the two plots; the note's <img> stayed text
    text = "".join(page.text)
    assert 'int8 <script>alert("x")</script>' in text and "<b>CPU</b>" in text
    assert "&lt;img src=https://evil.example/x.png&gt; &amp; more" in html


def test_page_is_deterministic():
    report = make_report(load("sample"))
    assert render_html(report) == render_html(report)


def two_batches() -> list[dict]:
    """The sample's x86-cpu rows from two benches of one build: bench.batch 1 here, 8 on another host."""
    at_eight = load("sample")
    at_eight["host"]["hostname"] = "host-b"
    for a in at_eight["artifacts"]:
        a["batch"] = 8
    rows = merge_reports([load("sample"), at_eight])["rows"]
    return [r for r in rows if r["status"] == "measured"]


def test_plots_name_the_batch_and_device_where_rows_differ_in_them(monkeypatch):
    from edgedistill.report import plots

    figures = []
    real = plots._figure
    monkeypatch.setattr(plots, "_figure", lambda *a: figures.append(real(*a)) or figures[-1])
    rows = two_batches()
    plots.latency_fidelity_png(rows, 0.98, with_origin=True)
    plots.latency_bars_png(rows, with_origin=True)
    scatter, bars = ([t.get_text() for t in texts] for texts in (figures[0].axes[0].texts, figures[1].axes[0].get_yticklabels()))
    assert "onnxruntime-int8 @ ci-runner-7 (batch 1)" in scatter and "onnxruntime-int8 @ host-b (batch 8)" in scatter
    assert "x86-cpu · onnxruntime-int8 @ host-b (batch 8)" in bars
    for row in rows:
        row["batch"] = 1
    rows[0]["device"] = "GPU"
    figures.clear()
    plots.latency_fidelity_png(rows, 0.98)
    assert {t.get_text() for t in figures[0].axes[0].texts} >= {"onnxruntime-fp32 (GPU)", "onnxruntime-int8 (CPU)"}


def test_the_latency_bars_draw_no_p99_whisker_of_a_few_samples(monkeypatch):
    # as the tables: below 100 timed samples p99 is the slowest sample, not a tail figure
    from edgedistill.report import plots

    figures = []
    real = plots._figure
    monkeypatch.setattr(plots, "_figure", lambda *a: figures.append(real(*a)) or figures[-1])
    row = {"artifact": "onnx-fp32", "backend": "onnxruntime", "target": "x86-cpu", "status": "measured", "batch": 1,
           "latency_ms": {"p50": 2.0, "p90": 2.5, "p99": 9.0, "iterations": 5}}
    whiskers = lambda: len(figures[-1].axes[0].lines)
    plots.latency_bars_png([row])
    assert whiskers() == 0
    plots.latency_bars_png([{**row, "latency_ms": {**row["latency_ms"], "iterations": 100}}])
    assert whiskers() == 2  # the line to p99 and its cap
