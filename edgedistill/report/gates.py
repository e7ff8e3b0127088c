"""CI gates: latency, fidelity and size limits on the artifact a build would ship.

Each violation is one line naming the target, artifact and build. A gate that cannot be
checked is a violation too: an estimated latency is never allowed to pass (or fail) a
latency gate, nor is one measured off the target (ONNX Runtime on the host CPU for an OpenVINO
GPU target, select.off_target); a missing cosine or size never passes quietly, and a NaN/inf one fails.
"""

from __future__ import annotations

import math

from .content import effective_selections
from .merge import host_label, to_comparison
from .schema import as_number, beside_limit, fidelity_of, p50_of
from .select import off_target


def _who(row: dict) -> str:
    return f"{row.get('target')}/{row.get('artifact')} (build {row.get('build')}, host {host_label(row.get('host'))})"


_GATE_TEXT = {"_latency": "latency gate (p50 <= {:g} ms)", "_cosine": "cosine gate (>= {:g})",
              "_size": "size gate (<= {:g} MB)", "_task_top1": "task top-1 gate (>= {:g})",
              "_zero_shot_top1": "zero-shot top-1 gate (>= {:g})"}


def _gated_rows(doc: dict, artifact: str | None, gates: list) -> tuple[list[dict], list[str]]:
    """The rows to gate and violations found while choosing them."""
    rows = doc.get("rows") or []
    if artifact is not None:
        hits = [r for r in rows if r.get("artifact") == artifact]
        if hits:
            return hits, []
        have = ", ".join(dict.fromkeys(str(r.get("artifact")) for r in rows)) or "none"
        return [], [f"artifact {artifact!r} is not in the report (artifacts: {have})"]
    picked, problems = [], []
    for sel in effective_selections(doc):
        name, build, target = sel.get("artifact"), sel.get("build"), sel.get("target")
        if name is None:
            # Nothing to gate (e.g. estimates only): each requested gate could not be checked.
            problems.extend(f"{target} (build {build}): {_GATE_TEXT[fn.__name__].format(limit)} not checked: "
                            f"no artifact selected ({sel.get('reason', '')})" for fn, limit in gates)
            continue
        # A selected row may now be a measured row that replaced its estimate (merge.py).
        match = [r for r in rows if r.get("target") == target and r.get("artifact") == name
                 and (r.get("build") == build or any(p.get("build") == build for p in r.get("replaces") or []))]
        if not match:
            problems.append(f"{target}/{name} (build {build}): selected but missing from the rows")
        picked.extend(r for r in match if r not in picked)
    return picked, problems


def _latency(row: dict, limit: float, target: dict) -> str | None:
    p50 = p50_of(row)
    status = row.get("status")
    where = off_target(row, target)
    if status == "measured" and where is not None:
        return (f"{_who(row)}: latency gate (p50 <= {limit:g} ms) not checked: the artifact {where}, "
                f"so its p50 is not the target's")
    if status == "estimated":
        shown = f"{p50:.2f} ms" if p50 is not None else "none"
        return (f"{_who(row)}: latency gate (p50 <= {limit:g} ms) not checked: only an estimated p50 ({shown}) "
                f"exists; run `edgedistill bench` on the device to measure it")
    if status != "measured" or p50 is None:
        return f"{_who(row)}: latency gate (p50 <= {limit:g} ms) not checked: no measured latency (status {status})"
    if p50 > limit:  # with its batch: a p50 at batch 8 is a batch of 8 images' latency, not one image's
        at = f" at batch {row['batch']}" if row.get("batch") is not None else ""
        return f"{_who(row)}: measured p50 latency {beside_limit(p50, limit, '.2f')} ms > {limit:g} ms{at}"
    return None


def _cosine(row: dict, limit: float, target: dict) -> str | None:
    cos = fidelity_of(row, "cosine_vs_fp32")
    if cos is None:
        return f"{_who(row)}: cosine gate (>= {limit:g}) not checked: no cosine vs fp32 (status {row.get('status')})"
    if not math.isfinite(cos):
        return f"{_who(row)}: cosine vs fp32 is {cos}, not finite, so it fails the cosine gate (>= {limit:g})"
    if cos < limit:
        return f"{_who(row)}: cosine vs fp32 {beside_limit(cos, limit, '.4f')} < {limit:g}"
    return None


def _labelled_top1(key: str, what: str, how: str):
    """A gate on a top-1 against bench.eval_dir's labels (fidelity[key]), which a row has only when benched so (`how`)."""
    def gate(row: dict, limit: float, target: dict) -> str | None:
        top1 = fidelity_of(row, key)
        if top1 is None:
            return f"{_who(row)}: {what} gate (>= {limit:g}) not checked: no {what} ({how})"
        if not math.isfinite(top1):
            return f"{_who(row)}: {what} is {top1}, not finite, so it fails the {what} gate (>= {limit:g})"
        if top1 < limit:
            return f"{_who(row)}: {what} {beside_limit(top1, limit, '.4f')} < {limit:g}"
        return None

    gate.__name__ = f"_{key}"
    return gate


# the class output's top-1: absent unless the student named its classes
_task = _labelled_top1("task_top1", "task top-1", "bench it with bench.eval_dir set to labelled images of the student's classes")
# the embedding against the open_clip teacher's class prompts
_zero_shot = _labelled_top1("zero_shot_top1", "zero-shot top-1", "bench it with bench.eval_dir and bench.zero_shot_head set")


def _size(row: dict, limit: float, target: dict) -> str | None:
    size = as_number(row.get("size_mb"))
    if size is None:
        return f"{_who(row)}: size gate (<= {limit:g} MB) not checked: size unknown (status {row.get('status')})"
    if not math.isfinite(size):
        return f"{_who(row)}: size is {size}, not finite, so it fails the size gate (<= {limit:g} MB)"
    if size > limit:
        return f"{_who(row)}: size {beside_limit(size, limit, '.1f')} MB > {limit:g} MB"
    return None


def check_gates(report_or_comparison: dict, *, max_latency_ms: float | None, min_cosine: float | None,
                max_size_mb: float | None, artifact: str | None = None, min_task_top1: float | None = None,
                min_zero_shot_top1: float | None = None) -> list[str]:
    """One line per violation; an empty list means every requested gate passed."""
    gates = [(fn, float(limit)) for fn, limit in ((_latency, max_latency_ms), (_cosine, min_cosine), (_size, max_size_mb),
                                                  (_task, min_task_top1), (_zero_shot, min_zero_shot_top1)) if limit is not None]
    if not gates:
        return []
    doc = to_comparison(report_or_comparison)
    rows, violations = _gated_rows(doc, artifact, gates)
    targets = doc.get("targets") or {}
    for row in rows:
        target = targets.get(row.get("target")) or {}
        violations.extend(v for fn, limit in gates if (v := fn(row, limit, target)) is not None)
    return violations
