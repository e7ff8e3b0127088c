"""Glue for the `report` stage of one build: bench.json -> report/report.{json,md,html}."""

from __future__ import annotations

import json
from pathlib import Path

from .report import make_report, write_report


def write_build_report(workdir: Path, bench_json: Path, remaining_steps: list[str]) -> dict:
    bench = json.loads(Path(bench_json).read_text())
    bench["_source"] = str(bench_json)  # a hand-edited latency is refused naming this file (report.select_artifact)
    # The report names the folder it is written into; bench may have run there before a copy.
    bench["build"] = {**(bench.get("build") or {}), "folder": str(workdir)}
    report = make_report(bench, remaining_steps)
    write_report(report, Path(workdir) / "report")
    return report
