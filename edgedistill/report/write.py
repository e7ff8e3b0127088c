"""Write report.json, report.md and report.html so that none is ever seen half-written."""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path

from .build_report import make_report
from .render_html import render_html
from .render_markdown import render_markdown
from .schema import kind_of


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _atomic_write(path: Path, text: str) -> None:
    """Temp file in the same folder, then os.replace: readers see the old file or the new one."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; a report is meant to be shared
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _finite(obj):
    """NaN/inf become null: report.json stays strict JSON that any tool can read."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_finite(v) for v in obj]
    return obj


def write_report(report: dict, out_dir: Path) -> dict[str, Path]:
    """Write the three files (a bench document is turned into a report first).

    Returns {"json": ..., "md": ..., "html": ...}. Everything is rendered before the first
    write, and report.json, which tools read to decide the report is done, is written last.
    """
    if kind_of(report) == "bench":
        report = make_report(report)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    clean = _finite({k: v for k, v in report.items() if not str(k).startswith("_")})
    texts = {
        "html": render_html(clean),
        "md": render_markdown(clean),
        "json": json.dumps(clean, indent=2, ensure_ascii=False, allow_nan=False) + "\n",
    }
    paths = {kind: out_dir / f"report.{kind}" for kind in texts}
    for kind, text in texts.items():
        _atomic_write(paths[kind], text)
    return paths
