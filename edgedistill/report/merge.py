"""Read bench/report documents from disk and merge them into one comparison across builds and devices.

A host build can only estimate a device it does not have. When a bench.json measured on that
device (e.g. a Jetson) is merged in, its measured row takes the estimate's place and keeps the
estimate's error, so people see how far the estimator was off. Statuses are never blended, and
a measurement only replaces an estimate of the same model (same student and teacher): rows of
different models stay side by side, each under its own build.
"""

from __future__ import annotations

import copy
import json
from datetime import datetime, timezone
from pathlib import Path

from ..errors import EdgedistillError
from .build_report import default_remaining_steps
from .schema import COMPARISON, artifacts_of, check_latencies, kind_of, p50_of
from .select import select_artifact

# Where a build folder keeps its documents, best first (a report already holds the selection).
IN_FOLDER = ("report/report.json", "bench/bench.json", "report.json", "bench.json")
# Statuses that a measured row from another input replaces.
_REPLACEABLE = ("estimated", "pending")
# What says two inputs built the same model: the student weights' sha256 when both bench.json
# files record it (a build folder copied to the device keeps it), else architecture and teacher.
_MODEL_KEYS = ("student", "teacher", "student_sha256")


def _candidates(path: Path) -> list[Path]:
    """The files an input stands for, best first: a file itself, or what a build folder holds."""
    if path.is_dir():
        found = [path / rel for rel in IN_FOLDER if (path / rel).is_file()]
        if not found:
            raise EdgedistillError(
                f"{path} has no report/report.json or bench/bench.json",
                "run `edgedistill bench` for that build, or pass the json file itself",
            )
        return found
    if not path.is_file():
        raise EdgedistillError(f"{path} does not exist", "pass a build folder or a bench.json/report.json file")
    return [path]


def _folder_of(file: Path) -> str | None:
    """The build folder a file lies in, spelled as its path was given: BUILD for BUILD/report/report.json
    or BUILD/bench/bench.json (or a folder's own report.json or bench.json); None for other names."""
    parts = Path(file).parts
    for rel in IN_FOLDER:
        tail = Path(rel).parts
        if parts[-len(tail):] == tail:
            return str(Path(*parts[:-len(tail)])) if len(parts) > len(tail) else "."
    return None


def _read(file: Path) -> dict:
    try:
        return json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise EdgedistillError(f"cannot read {file}: {exc}", "re-run `edgedistill bench` to rewrite it") from exc


def load_reports(paths: list[Path]) -> list[dict]:
    """Bench/report documents for build folders or json files; each remembers its path in `_source`."""
    docs = []
    for raw in paths:
        for file in _candidates(Path(raw)):
            doc = _read(file)
            # `report A B --out A/report` leaves a comparison where build A's own report was; its
            # bench/bench.json is still A's own measurement, so a folder falls back to that.
            if kind_of(doc, str(file)) != "comparison":
                break
        else:
            raise EdgedistillError(f"{file} is already a comparison", "pass the build folders it was made from")
        check_latencies(doc, str(file))
        doc["_source"] = str(file)
        folder = _folder_of(file)
        if folder is not None:  # bench.json's build.dir is where bench ran, before any copy, download or cache restore
            doc["build"] = {**(doc.get("build") or {}), "folder": folder}
        docs.append(doc)
    return docs


def host_label(host: dict | None) -> str:
    host = host or {}
    return str(host.get("hostname") or host.get("cpu_model") or "unknown host")


def _base_label(doc: dict, index: int) -> str:
    """What reports call a build: its folder as now named (build.folder), else where bench ran."""
    build = doc.get("build") or {}
    return str(build.get("folder") or build.get("dir") or doc.get("_source") or f"input-{index + 1}")


def _labels(docs: list[dict]) -> list[str]:
    """A unique build label per input (_base_label), with the host only where two would be the same
    (the same folder name on two machines), and a number if that is not enough."""
    base = [_base_label(d, i) for i, d in enumerate(docs)]
    labels = [b if base.count(b) == 1 else f"{b}@{host_label(d.get('host'))}" for b, d in zip(base, docs)]
    return [lab if labels.count(lab) == 1 else f"{lab}#{i + 1}" for i, lab in enumerate(labels)]


def _source(doc: dict, label: str) -> dict:
    kind = kind_of(doc)
    selected = doc.get("selected") if kind == "report" and isinstance(doc.get("selected"), dict) else None
    steps = doc.get("remaining_steps") if kind == "report" else None
    build = doc.get("build") or {}
    src = {
        "build": label,
        "path": doc.get("_source"),
        "schema": doc.get("schema"),
        "created": doc.get("created"),
        "target": (doc.get("target") or {}).get("name") or "unknown target",
        "host": copy.deepcopy(doc.get("host") or {}),
        "student": build.get("student"),
        "teacher": build.get("teacher"),
        "student_sha256": build.get("student_sha256"),
        "eval": copy.deepcopy(doc.get("eval") or {}),
        "selected": copy.deepcopy(selected or select_artifact(doc)),
        "remaining_steps": list(steps if steps is not None else default_remaining_steps(doc)),
    }
    # Other top-level bench fields (settings, estimator, ...) pass through to the source.
    handled = {"artifacts", "build", "target", "host", "eval", "selected", "remaining_steps", "schema", "created"}
    src.update({k: copy.deepcopy(v) for k, v in doc.items()
                if k not in handled and k not in src and not str(k).startswith("_")})
    return src


# Fields every row has (None when the bench left them out); renderers and replacement rely on them.
_ROW_FIELDS = ("backend", "precision", "device", "status", "size_mb", "batch", "threads", "latency_ms",
               "throughput_ips", "fidelity", "notes", "path")
# Set by the merge itself: an artifact field of the same name never overrides them.
_MERGE_FIELDS = ("build", "target", "host", "artifact", "selected", "estimate_error_pct", "replaces")


def _model_of(src: dict) -> tuple:
    """The identity of the model a source (or a bench document's build record) describes."""
    return tuple(src.get(key) or None for key in _MODEL_KEYS)


def _same_model(a: tuple, b: tuple) -> bool:
    if a[2] and b[2]:
        return a[2] == b[2]  # the weights themselves
    return a[:2] == b[:2]


def _row(art: dict, src: dict, index: int) -> dict:
    """A comparison row: every field of the artifact record (new bench fields such as `estimate`,
    `roofline_ms`, `throughput` and `memory` pass through untouched) plus where it came from."""
    row = {"build": src["build"], "target": src["target"], "host": src["host"], "artifact": art.get("name")}
    row.update({k: None for k in _ROW_FIELDS})
    row.update({k: copy.deepcopy(v) for k, v in art.items()
                if k != "name" and k not in _MERGE_FIELDS and not str(k).startswith("_")})
    row.update(selected=art.get("name") == src["selected"].get("artifact"),
               estimate_error_pct=None, replaces=[], _input=index, _model=_model_of(src))
    return row


def _error_pct(estimated: dict, measured: dict) -> float | None:
    est, meas = p50_of(estimated), p50_of(measured)
    if estimated.get("status") != "estimated" or est is None or not meas or estimated.get("batch") != measured.get("batch"):
        return None  # latencies at two batch sizes say nothing about the estimator
    return round((est - meas) / meas * 100.0, 2)


def _replace_estimates(rows: list[dict]) -> list[dict]:
    """Put a measured row from another input in place of each estimated/pending row it covers:
    same target, artifact name and model. A row of another model is kept beside it."""
    measured: dict[tuple, list[int]] = {}
    for i, row in enumerate(rows):
        if row["status"] == "measured":
            measured.setdefault((row["target"], row["artifact"]), []).append(i)
    out, placed = [], set()
    for i, row in enumerate(rows):
        if i in placed:
            continue
        cands = [m for m in measured.get((row["target"], row["artifact"]), [])
                 if rows[m]["_input"] != row["_input"] and _same_model(rows[m]["_model"], row["_model"])]
        if row["status"] in _REPLACEABLE and cands:
            meas = rows[cands[0]]
            err = _error_pct(row, meas)
            meas["replaces"].append({"build": row["build"], "host": host_label(row["host"]), "status": row["status"],
                                     "latency_ms": row["latency_ms"], "estimate_error_pct": err,
                                     "estimate": row.get("estimate")})
            if meas["estimate_error_pct"] is None:
                meas["estimate_error_pct"] = err
            meas["selected"] = meas["selected"] or row["selected"]
            if cands[0] in placed:
                continue
            row, i = meas, cands[0]
        out.append(row)
        placed.add(i)
    return out


def _done(step: str, build: str, rows: list[dict]) -> bool:
    """A derived step ("<artifact>: ...") is done once another input measured that artifact; any step
    of a build (the pipeline's "copy the build folder to the device", ...) once every row it left
    pending or estimated was measured by another input (the device's bench.json)."""
    if any(step.startswith(f"{row['artifact']}:") and any(rep["build"] == build for rep in row["replaces"]) for row in rows):
        return True
    replaced = any(rep["build"] == build for row in rows for rep in row["replaces"])
    return replaced and not any(row["build"] == build and row["status"] in _REPLACEABLE for row in rows)


def merge_reports(reports: list[dict]) -> dict:
    """A comparison document (schema edgedistill.comparison/1): one row per (build, target, artifact)."""
    if not reports:
        raise EdgedistillError("nothing to report", "pass at least one build folder or bench.json")
    if len(reports) == 1 and kind_of(reports[0]) == "comparison":
        return copy.deepcopy(reports[0])
    sources, rows, targets = [], [], {}
    for index, (doc, label) in enumerate(zip(reports, _labels(reports))):
        if kind_of(doc, f"input {index + 1}") == "comparison":
            raise EdgedistillError("a comparison cannot be merged again", "pass the build folders it was made from")
        src = _source(doc, label)
        sources.append(src)
        targets.setdefault(src["target"], copy.deepcopy(doc.get("target") or {"name": src["target"]}))
        rows.extend(_row(art, src, index) for art in artifacts_of(doc))
    rows = _replace_estimates(rows)
    for row in rows:
        del row["_input"], row["_model"]
    steps: list[str] = []
    for src in sources:
        steps.extend(s for s in src["remaining_steps"] if s not in steps and not _done(s, src["build"], rows))
    return {
        "schema": COMPARISON,
        "created": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "sources": sources,
        "targets": targets,
        "rows": rows,
        "selected": [{"build": s["build"], "target": s["target"], **s["selected"]} for s in sources],
        "remaining_steps": steps,
    }


def to_comparison(doc: dict) -> dict:
    """Any bench, report or comparison document as a comparison, so renderers handle one shape."""
    return doc if kind_of(doc) == "comparison" else merge_reports([doc])
