"""Write report.json, report.md and report.html so that none is ever seen half-written."""

from __future__ import annotations

import functools
import hashlib
import json
from pathlib import Path

from ..artifacts import strict_json, write_bytes_atomic
from .build_report import make_report
from .render_html import render_html
from .render_markdown import render_markdown
from .schema import kind_of


def _atomic_write(path: Path, text: str) -> None:
    """Readers see the old file or the new one, shared as a plain file is (artifacts.write_bytes_atomic)."""
    write_bytes_atomic(path, text.encode("utf-8"))


def write_report(report: dict, out_dir: Path) -> dict[str, Path]:
    """Write the three files (a bench document is turned into a report first).

    Returns {"json": ..., "md": ..., "html": ...}. Everything is rendered before the first
    write, and report.json, which tools read to decide the report is done, is written last.
    """
    if kind_of(report) == "bench":
        report = make_report(report)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    clean = strict_json({k: v for k, v in report.items() if not str(k).startswith("_")})
    paths = {kind: out_dir / f"report.{kind}" for kind in ("html", "md", "json")}
    texts = {"json": json.dumps(clean, indent=2, ensure_ascii=False, allow_nan=False) + "\n", "md": render_markdown(clean)}
    if _unchanged(paths, texts):  # a rebuild that changed nothing: the HTML's plots (matplotlib, ~0.6 s) are the same bytes
        return paths
    texts["html"] = render_html(clean) + _html_mark(texts["json"])
    for kind in ("html", "md", "json"):  # report.json last
        _atomic_write(paths[kind], texts[kind])
    return paths


@functools.cache
def _renderer_digest() -> str:
    """This package's sources: an edgedistill whose HTML or plots changed draws an unchanged build's report again."""
    digest = hashlib.sha256()
    for source in sorted(Path(__file__).parent.glob("*.py")):
        digest.update(source.read_bytes())
    return digest.hexdigest()[:16]


def _html_mark(json_text: str) -> str:
    """The HTML's last line: the code that drew it and the report.json it drew."""
    return f"<!-- edgedistill report renderer {_renderer_digest()} of {hashlib.sha256(json_text.encode()).hexdigest()[:16]} -->\n"


def _unchanged(paths: dict[str, Path], texts: dict[str, str]) -> bool:
    """The folder holds this report.json and report.md, and the report.html this code drew from that very
    report.json (its mark says so: a run stopped mid-write may have left a later document's HTML).
    (A build's `created` is bench.json's: it changes only when bench runs again.)"""
    try:
        if not (paths["json"].read_text(encoding="utf-8") == texts["json"] and paths["md"].read_text(encoding="utf-8") == texts["md"]):
            return False
        with paths["html"].open("rb") as html:
            html.seek(max(0, html.seek(0, 2) - 200))
            return html.read().decode("utf-8", "replace").endswith(_html_mark(texts["json"]))
    except (OSError, UnicodeDecodeError):
        return False
