"""GitHub-flavoured markdown for `$GITHUB_STEP_SUMMARY` and report.md."""

from __future__ import annotations

import re

from .content import (ESTIMATE_NOTE, budget_text, by_target, columns_for, host_line, hosts, needs_origin,
                      notes, selected_for, source_line, target_text, throughput_note, timing_note, title)
from .merge import to_comparison

_SPECIAL = re.compile(r"([\\`*_\[\]|#~])")


def _esc(text: str) -> str:
    # "<" becomes an entity so no HTML tag can form (GitHub renders inline HTML); ">" alone is
    # harmless since md() text never starts a line, and "cosine >= 0.98" stays readable.
    return _SPECIAL.sub(r"\\\1", text).replace("<", "&lt;")


def md(text: object) -> str:
    """Text safe inside markdown and table cells: one line, specials escaped."""
    return _esc(" ".join(str(text).split()))


def md_code(text: object) -> str:
    """Like md(), but `code` spans written in the text stay code spans (commands in steps)."""
    parts = " ".join(str(text).split()).split("`")
    if len(parts) % 2 == 0:  # unbalanced backticks: escape everything
        return md(text)
    return "".join(_esc(p) if i % 2 == 0 else f"`{p}`" for i, p in enumerate(parts))


def _table(rows: list[dict], origin: bool) -> list[str]:
    cols = columns_for(rows, origin)
    lines = ["| sel. | " + " | ".join(md(c.header) for c in cols) + " |",
             "|:-:|" + "|".join("--:" if c.numeric else ":--" for c in cols) + "|"]
    for row in rows:
        cells = [md(c.cell(row)) for c in cols]
        if row.get("selected"):
            cells[0] = f"**{cells[0]}**"
        lines.append(f"| {'★' if row.get('selected') else ''} | " + " | ".join(cells) + " |")
    return lines


def _target(doc: dict, name: str, target: dict, rows: list[dict]) -> list[str]:
    device = f" ({md(target['device'])})" if target.get("device") else ""
    out = [f"## Target {md(name)}{device}", ""]
    if target_text(target):
        out += [md(target_text(target)), ""]
    out += [f"Fidelity budget: {md(budget_text(target))}", ""]
    for sel in selected_for(doc, name):
        chosen = f"**{md(sel['artifact'])}**" if sel.get("artifact") else "**none**"
        who = f" for {md(sel.get('build'))}" if len(doc.get("sources") or []) > 1 else ""
        out.append(f"- Selected{who}: {chosen}: {md_code(sel.get('reason', ''))}")
    out += [""] + _table(rows, needs_origin(doc, rows))
    measured = [line for line in (timing_note(rows), throughput_note(rows)) if line]
    if measured:  # what the percentiles rest on and what img/s is: a sync and an async figure differ severalfold
        out += [""] + [f"{md(line)}  " for line in measured[:-1]] + [md(measured[-1])]
    found = notes(rows)
    if found:
        out += ["", "Notes:", ""] + [f"- {md(art)}: {md_code(text)}" for art, text in found]
    return out + [""]


def render_markdown(report_or_comparison: dict) -> str:
    doc = to_comparison(report_or_comparison)
    out = [f"# {md(title(doc))}", ""]
    # set by `edgedistill report` for builds that are not complete: an earlier run's figures must not read as theirs
    out += [line for w in report_or_comparison.get("warnings") or [] for line in (f"> **Warning:** {md(w)}", "")]
    out += ["**Hosts**", ""]
    out += [f"- {md(host_line(h))}" for h in hosts(doc)]
    out += ["", "**Builds**", ""]
    out += [f"- {md(source_line(s))}" for s in doc.get("sources") or []]
    out.append("")
    for name, target, rows in by_target(doc):
        out += _target(doc, name, target, rows)
    if any(r.get("status") == "estimated" for r in doc.get("rows") or []):
        out += [f"> **Estimated rows are not measurements.** {md_code(ESTIMATE_NOTE)}", ""]
    steps = doc.get("remaining_steps") or []
    out += ["## Remaining steps", ""]
    out += [f"- [ ] {md_code(s)}" for s in steps] or ["None: every artifact was built and measured here."]
    return "\n".join(out) + "\n"
