"""report.html: one self-contained page (inline CSS, plots as data: PNGs, no scripts or URLs)."""

from __future__ import annotations

from html import escape

from .content import (ESTIMATE_NOTE, budget_text, by_target, columns_for, host_line, hosts,
                      needs_origin, notes, origin_text, selected_for, source_line, status_text, target_text,
                      throughput_note, timing_note, title)
from .html_style import CSS
from .plots import latency_bars_png, latency_fidelity_png
from .merge import host_label, to_comparison

_STATUS_CLASS = ("measured", "estimated", "pending", "failed")
# Cells holding several figures, and how they split into lines.
_STACKED = {
    "img/s": lambda text: text.split(" / "),                    # b1 2942 / b4 7417
    "peak mem MiB": lambda text: text.replace(" (", "\0(").replace(", ", "\0").split("\0"),
    "estimate (error)": lambda text: text.replace(" (", "\0(").replace("; ", "\0").split("\0"),
}


def e(text: object) -> str:
    return escape(str(text), quote=True)


def e_code(text: object) -> str:
    """Escaped text whose `code` spans become <code> (escaping first keeps this safe)."""
    parts = str(text).split("`")
    if len(parts) % 2 == 0:
        return e(text)
    return "".join(e(p) if i % 2 == 0 else f"<code>{e(p)}</code>" for i, p in enumerate(parts))


def _img(png_b64: str, alt: str, caption: str) -> str:
    return (f'<figure><img src="data:image/png;base64,{png_b64}" alt="{e(alt)}">'
            f"<figcaption>{e(caption)}</figcaption></figure>")


def _status_cell(row: dict) -> str:
    status = str(row.get("status") or "")
    cls = status if status in _STATUS_CLASS else "pending"
    return f'<span class="badge badge-{cls}">{e(status_text(row))}</span>'


def _table(rows: list[dict], origin: bool) -> str:
    """Build and host go under the artifact name (not in columns) so the table fits the page."""
    cols = columns_for(rows)
    head = '<th title="selected">★</th>' + "".join(f"<th>{e(c.header)}</th>" for c in cols)
    body = []
    for row in rows:
        classes = [c for c, on in (("row-selected", row.get("selected")),
                                   ("row-estimated", row.get("status") == "estimated")) if on]
        cells = ['<td class="star" title="selected">★</td>' if row.get("selected") else "<td></td>"]
        for col in cols:
            if col.header == "status":
                cells.append(f"<td>{_status_cell(row)}</td>")
            elif col.header == "artifact":
                sub = f'<div class="origin">{e(origin_text(row))}</div>' if origin else ""
                cells.append(f'<td class="name">{e(col.cell(row))}{sub}</td>')
            elif col.id in _STACKED:
                # Several figures in one cell: one per line keeps the table inside the page.
                lines = [e(part) for part in _STACKED[col.id](col.cell(row))]
                cells.append(f'<td class="num stack">{"<br>".join(lines)}</td>')
            else:
                cells.append(f'<td class="{"num" if col.numeric else "text"}">{e(col.cell(row))}</td>')
        cls_attr = f' class="{" ".join(classes)}"' if classes else ""
        body.append(f"<tr{cls_attr}>{''.join(cells)}</tr>")
    return (f'<div class="table-wrap"><table><thead><tr>{head}</tr></thead>'
            f"<tbody>{''.join(body)}</tbody></table></div>")


def _notes(rows: list[dict]) -> str:
    found = notes(rows)
    if not found:
        return ""
    items = "".join(f"<li><code>{e(art)}</code>: {e_code(text)}</li>" for art, text in found)
    return f'<ul class="notes">{items}</ul>'


def _target_section(doc: dict, name: str, target: dict, rows: list[dict]) -> str:
    origin = needs_origin(doc, rows)
    device = f'<span class="device">{e(target["device"])}</span>' if target.get("device") else ""
    parts = [f"<section class=\"target\"><h2>Target <code>{e(name)}</code>{device}</h2>"]
    if target_text(target):
        parts.append(f'<p class="target-device">{e(target_text(target))}</p>')
    parts.append(f'<p class="budget">Fidelity budget: {e(budget_text(target))}</p>')
    for sel in selected_for(doc, name):
        chosen = f"<code>{e(sel['artifact'])}</code>" if sel.get("artifact") else "<strong>none</strong>"
        who = f" for {e(sel.get('build'))}" if len(doc.get("sources") or []) > 1 else ""
        reason = e_code(sel.get("reason", ""))
        parts.append(f'<div class="selected"><strong>Selected{who}:</strong> {chosen} &mdash; {reason}</div>')
    parts.append(_table(rows, origin))
    parts += [f'<p class="meta">{e(line)}</p>' for line in (timing_note(rows), throughput_note(rows)) if line]
    parts.append(_notes(rows))
    # Name hosts in the plot only where the target's rows come from more than one.
    many_hosts = len({host_label(r.get("host")) for r in rows}) > 1
    png, left_out = latency_fidelity_png(rows, target.get("min_cosine"), many_hosts)
    caption = (f"{name}: p50 latency vs cosine to the fp32 reference. Filled = measured, hollow = estimated; "
               "the dashed line is the Pareto front of measured artifacts.")
    if left_out:
        caption += " Not plotted (no latency or no cosine yet): " + ", ".join(left_out) + "."
    if png:
        parts.append(_img(png, f"p50 latency vs fidelity for {name}", caption))
    elif left_out:
        parts.append(f'<p class="meta">{e("No latency/fidelity plot: " + ", ".join(left_out))}</p>')
    parts.append("</section>")
    return "".join(parts)


def _header(doc: dict, original: dict) -> list[str]:
    # created/schema come from the input itself: a single report is shown through a comparison view.
    return ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            f"<title>{e(title(doc))}</title><style>{CSS}</style></head><body><main>",
            f'<header><h1>{e(title(doc))}</h1><p class="meta">created {e(original.get("created", ""))}</p></header>',
            *[f'<p class="note"><strong>Warning:</strong> {e(w)}</p>' for w in original.get("warnings") or []],
            '<section><h2>Hosts</h2><ul class="facts">', *[f"<li>{e(host_line(h))}</li>" for h in hosts(doc)],
            '</ul><h2>Builds</h2><ul class="facts">',
            *[f"<li>{e(source_line(s))}</li>" for s in doc.get("sources") or []], "</ul></section>"]


def _bars(rows: list[dict]) -> str:
    png = latency_bars_png(rows, len({host_label(r.get("host")) for r in rows}) > 1)
    if not png:
        return ""
    return ("<section><h2>p50 latency per device and artifact</h2>"
            + _img(png, "p50 latency per device and artifact",
                   "Bars: p50; whisker: p99; hatched bars are estimates, not measurements.") + "</section>")


def _steps(steps: list[str]) -> str:
    body = ('<ol class="steps">' + "".join(f"<li>{e_code(s)}</li>" for s in steps) + "</ol>" if steps
            else "<p>None: every artifact was built and measured here.</p>")
    return f"<section><h2>Remaining steps</h2>{body}</section>"


def render_html(report_or_comparison: dict) -> str:
    doc = to_comparison(report_or_comparison)
    groups = by_target(doc)
    rows = [r for _, _, rs in groups for r in rs]
    out = _header(doc, report_or_comparison)
    out += [_target_section(doc, name, target, rs) for name, target, rs in groups]
    if any(r.get("status") == "estimated" for r in rows):
        out.append(f'<p class="note"><strong>Estimated rows are not measurements.</strong> {e_code(ESTIMATE_NOTE)}</p>')
    out += [_bars(rows), _steps(doc.get("remaining_steps") or [])]
    out.append(f"<footer>edgedistill report &middot; schema {e(report_or_comparison.get('schema'))}</footer>")
    out.append("</main></body></html>")
    return "\n".join(out) + "\n"
