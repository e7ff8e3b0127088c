"""Turn a bench.json document into report.json: the bench content plus the choice and what is left to do."""

from __future__ import annotations

import copy

from ..errors import EdgedistillError
from .schema import REPORT, artifacts_of, kind_of
from .select import select_artifact


def default_remaining_steps(bench: dict) -> list[str]:
    """One step per artifact that still needs the device, taken from its notes."""
    steps = []
    for art in artifacts_of(bench):
        status = art.get("status")
        if status not in ("pending", "estimated"):
            continue
        note = str(art.get("notes") or "").strip()
        if status == "pending":
            steps.append(f"{art.get('name')}: {note or 'build and bench it on the target device'}")
        else:
            steps.append(f"{art.get('name')}: latency is estimated; "
                         "run `edgedistill bench` on the device to measure it")
    return steps


def make_report(bench: dict, remaining_steps: list[str] | None = None) -> dict:
    """report.json content for a bench (or an older report, which is re-selected).

    `remaining_steps=None` derives them from pending and estimated artifacts; pass a list
    (possibly empty) when the pipeline knows the exact commands.
    """
    if kind_of(bench, "bench document") == "comparison":
        raise EdgedistillError("a comparison cannot be turned into a single report", "pass one bench.json")
    # Keys starting with "_" are loader bookkeeping (e.g. the source path), not report content.
    report = {k: copy.deepcopy(v) for k, v in bench.items() if not str(k).startswith("_")}
    report["schema"] = REPORT
    report["selected"] = select_artifact(report)
    steps = default_remaining_steps(report) if remaining_steps is None else remaining_steps
    report["remaining_steps"] = [str(s) for s in steps]
    return report
