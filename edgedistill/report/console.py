"""The end-of-command summary table (rich), built from the same cells as report.md."""

from __future__ import annotations

from rich.table import Table

from .content import columns_for, host_line, hosts, needs_origin, title
from .merge import to_comparison

# The terminal is narrow: drop p90 and the vs-fp32 top-1 (report.md has them all).
_DROP = {"p90 ms", "top-1 vs fp32"}
_STYLE = {"measured": "green", "estimated": "yellow", "pending": "dim", "failed": "red"}


def summary_table(report: dict) -> Table:
    doc = to_comparison(report)
    rows = doc.get("rows") or []
    cols = [c for c in columns_for(rows, needs_origin(doc, rows)) if c.header not in _DROP]
    table = Table(title=title(doc), caption=_caption(doc), caption_justify="left", header_style="bold")
    multi_target = len({r.get("target") for r in rows}) > 1
    table.add_column("")
    if multi_target:
        table.add_column("target")
    for col in cols:
        table.add_column(col.header, justify="right" if col.numeric else "left")
    for row in rows:
        cells = [c.cell(row) for c in cols]
        lead = ["★" if row.get("selected") else ""] + ([str(row.get("target"))] if multi_target else [])
        style = "bold" if row.get("selected") else _STYLE.get(str(row.get("status")), "")
        table.add_row(*lead, *cells, style=style)
    return table


def _caption(doc: dict) -> str:
    lines = [f"host {host_line(h)}" for h in hosts(doc)]
    for sel in doc.get("selected") or []:
        lines.append(f"selected for {sel.get('target')}: {sel.get('artifact') or 'none'} ({sel.get('reason', '')})")
    if any(r.get("status") == "estimated" for r in doc.get("rows") or []):
        lines.append("≈ = estimated, not measured")
    return "\n".join(lines)
