"""The end-of-command summary table (rich), built from the same cells as report.md.

The terminal is narrow (it must read at 100 columns): the table keeps what the choice is made
on (latency, throughput, size, fidelity vs fp32, the estimate's error) under short headers and
leaves the rest (backend, precision, p90/p99, per-batch throughput, probes, memory) to report.md.
Device and batch are kept where report.md shows them (rows differ in them; a batch other than 1).
"""

from __future__ import annotations

from rich import box
from rich.console import Console
from rich.table import Table

from .content import (DASH, Column, columns_for, effective_selections, host_line, hosts, needs_origin, throughput_columns,
                      throughput_note, timing_note, title)
from .merge import to_comparison

WIDTH = 100
_KEEP = ("artifact", "host", "device", "batch", "status", "p50 ms", "img/s", "size MB", "cosine vs fp32", "top-1 vs fp32",
         "estimate (error)")
# Dropped in this order, as long as the table is wider than WIDTH (a comparison adds target and host).
# Never device or batch (only there when rows differ in them): without them p50s would not compare.
_DROP_ORDER = ("top-1 vs fp32", "size MB", "img/s", "host")
_STYLE = {"measured": "green", "estimated": "yellow", "pending": "dim", "failed": "red"}


def _error_only(row: dict) -> str:
    """The console's estimate cell: just the error, e.g. '-20.8%' (report.md has the estimate too)."""
    for rep in row.get("replaces") or []:
        if rep.get("status") == "estimated" and isinstance(rep.get("estimate_error_pct"), (int, float)):
            return f"{rep['estimate_error_pct']:+.1f}%"
    own = row.get("estimate") if isinstance(row.get("estimate"), dict) else {}
    if row.get("status") == "measured" and isinstance(own.get("error_pct"), (int, float)):
        return f"{own['error_pct']:+.1f}%"
    return DASH


def _console_columns(rows: list[dict], origin: bool) -> list[Column]:
    cols = {c.id: c for c in columns_for(rows, origin)}
    # The main batch's figure only: "b1 2942 / b4 7417" would not fit.
    cols["img/s"] = throughput_columns(rows)[0]
    if "estimate (error)" in cols:
        cols["estimate (error)"] = Column("estimate (error)", _error_only, True, short="est. error")
    return [cols[h] for h in _KEEP if h in cols]


def summary_table(report: dict) -> Table:
    """The summary, at most WIDTH columns wide: less important columns go first when it is not."""
    doc = to_comparison(report)
    rows = doc.get("rows") or []
    cols = _console_columns(rows, needs_origin(doc, rows))
    table = _table(doc, rows, cols)
    for header in _DROP_ORDER:
        if Console(width=10 * WIDTH).measure(table).maximum <= WIDTH:
            break
        cols = [c for c in cols if c.id != header]
        table = _table(doc, rows, cols)
    return table


def _table(doc: dict, rows: list[dict], cols: list[Column]) -> Table:
    table = Table(title=title(doc), caption=_caption(doc), caption_justify="left", header_style="bold",
                  box=box.SIMPLE_HEAD, pad_edge=False)
    multi_target = len({r.get("target") for r in rows}) > 1
    table.add_column("", no_wrap=True)
    if multi_target:
        table.add_column("target", no_wrap=True)
    for col in cols:
        table.add_column(col.console_header, justify="right" if col.numeric else "left", no_wrap=True)
    for row in rows:
        cells = [c.cell(row) for c in cols]
        lead = ["★" if row.get("selected") else ""] + ([str(row.get("target"))] if multi_target else [])
        style = "bold" if row.get("selected") else _STYLE.get(str(row.get("status")), "")
        table.add_row(*lead, *cells, style=style)
    return table


def _caption(doc: dict) -> str:
    lines = [f"host {host_line(h)}" for h in hosts(doc)]
    for sel in effective_selections(doc):  # as report.md and report.html show them
        lines.append(f"selected for {sel.get('target')}: {sel.get('artifact') or 'none'} ({sel.get('reason', '')})")
    rows = doc.get("rows") or []
    lines += [line for line in (timing_note(rows), throughput_note(rows)) if line]
    if any(r.get("status") == "estimated" for r in rows):
        lines.append("≈ = estimated, not measured")
    lines.append("more columns (p90/p99, per-batch img/s, probes, memory) in report.md")
    return "\n".join(lines)
