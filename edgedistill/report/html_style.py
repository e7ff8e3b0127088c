"""Inline CSS for report.html: the page must open offline, so no external fonts or sheets."""

CSS = """
:root { --fg:#1f2328; --muted:#57606a; --line:#d0d7de; --soft:#f6f8fa; --sel:#fff8c5; --est:#fff1e5; --accent:#0969da; }
* { box-sizing: border-box; }
body { margin:0; background:#fff; color:var(--fg);
  font: 14px/1.5 -apple-system, "Segoe UI", "Noto Sans", Helvetica, Arial, sans-serif; }
main { max-width: 1240px; margin: 0 auto; padding: 24px 20px 40px; }
h1 { font-size: 24px; margin: 0 0 4px; }
h2 { font-size: 19px; margin: 28px 0 8px; padding-bottom: 4px; border-bottom: 1px solid var(--line); }
.meta, .budget, .target-device, figcaption, footer { color: var(--muted); font-size: 13px; }
ul.facts { margin: 4px 0 0; padding-left: 20px; }
ul.facts li { margin: 2px 0; }
code { font: 12.5px/1.4 ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; background: var(--soft);
  padding: 1px 4px; border-radius: 4px; }
.device { font-size: 13px; font-weight: normal; color: var(--muted); margin-left: 6px; }
.selected { background: var(--sel); border: 1px solid #d4a72c; border-radius: 6px; padding: 8px 12px; margin: 8px 0; }
.table-wrap { overflow-x: auto; margin: 10px 0; }
table { border-collapse: collapse; font-size: 13px; width: 100%; }
th, td { border: 1px solid var(--line); padding: 5px 7px; text-align: left; vertical-align: top; }
th { background: var(--soft); font-weight: 600; vertical-align: bottom; }
td.num { text-align: right; white-space: nowrap; font-variant-numeric: tabular-nums; }
td.name, td.text { white-space: nowrap; }

td.name .origin { font-size: 12px; color: var(--muted); font-weight: normal; }
ul.notes { margin: 4px 0 8px; padding-left: 20px; color: var(--muted); font-size: 13px; }
tr.row-selected td { background: var(--sel); font-weight: 600; }
tr.row-estimated td { background: var(--est); font-style: italic; }
.badge { display: inline-block; padding: 0 7px; border-radius: 10px; font-size: 12px; font-style: normal;
  font-weight: 600; border: 1px solid; white-space: nowrap; }
.badge-measured { color: #1a7f37; border-color: #1a7f37; }
.badge-estimated { color: #bc4c00; border-color: #bc4c00; background: #fff; }
.badge-pending { color: #57606a; border-color: #8c959f; }
.badge-failed { color: #cf222e; border-color: #cf222e; }
.star { color: #9a6700; text-align: center; }
figure { margin: 14px 0; }
figure img { max-width: 100%; height: auto; border: 1px solid var(--line); border-radius: 6px; }
.note { border-left: 4px solid #bc4c00; background: var(--est); padding: 8px 12px; margin: 12px 0; }
ol.steps li { margin: 3px 0; }
footer { margin-top: 32px; border-top: 1px solid var(--line); padding-top: 8px; }
"""
