"""The report stage: bench.json in, report.{json,md,html}, comparisons and CI gates out.

Reads JSON only; it never imports torch, onnxruntime or openvino (a test checks this).
"""

from .build_report import make_report
from .console import summary_table
from .gates import check_gates
from .merge import load_reports, merge_reports
from .render_html import render_html
from .render_markdown import render_markdown
from .select import select_artifact
from .write import write_report

__all__ = [
    "check_gates",
    "load_reports",
    "make_report",
    "merge_reports",
    "render_html",
    "render_markdown",
    "select_artifact",
    "summary_table",
    "write_report",
]
