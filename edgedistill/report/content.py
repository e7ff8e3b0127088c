"""What every renderer shows (markdown, HTML, console): the columns, host lines and per-target groups.

Defining the cells once keeps the three outputs telling the same story. Cells are plain text;
each renderer escapes them for its own format.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from .merge import host_label

DASH = "—"


@dataclass(frozen=True)
class Column:
    header: str
    cell: Callable[[dict], str]
    numeric: bool = False


def num(value, digits: int = 2) -> str:
    return f"{value:.{digits}f}" if isinstance(value, (int, float)) else DASH


def pct(value) -> str:
    return f"{value * 100:.1f}%" if isinstance(value, (int, float)) else DASH


def status_text(row: dict) -> str:
    """The status as recorded; a measured row that replaced an estimate shows that in its own column."""
    return str(row.get("status") or "unknown")


def latency(row: dict, key: str) -> str:
    value = (row.get("latency_ms") or {}).get(key)
    text = num(value)
    # "≈" marks an estimator's figure so it is never read as a measurement.
    return f"≈{text}" if row.get("status") == "estimated" and text != DASH else text


def fid(row: dict, key: str) -> object:
    return (row.get("fidelity") or {}).get(key)


def estimate_error(row: dict) -> str:
    """'≈1.90 ms (-20.8%)': the host's estimate that a device measurement replaced, and its error."""
    for rep in row.get("replaces") or []:
        if rep.get("status") == "estimated":
            est = num((rep.get("latency_ms") or {}).get("p50"))
            err = rep.get("estimate_error_pct")
            return f"≈{est} ms ({err:+.1f}%)" if isinstance(err, (int, float)) else f"≈{est} ms"
    return DASH


def _throughput(row: dict) -> str:
    text = num(row.get("throughput_ips"), 1)
    return f"≈{text}" if row.get("status") == "estimated" and text != DASH else text


BASE_COLUMNS = [
    Column("artifact", lambda r: str(r.get("artifact") or DASH)),
    Column("backend", lambda r: str(r.get("backend") or DASH)),
    Column("precision", lambda r: str(r.get("precision") or DASH)),
    Column("status", status_text),
    Column("p50 ms", lambda r: latency(r, "p50"), True),
    Column("p90 ms", lambda r: latency(r, "p90"), True),
    Column("p99 ms", lambda r: latency(r, "p99"), True),
    Column("img/s", _throughput, True),
    Column("size MB", lambda r: num(r.get("size_mb"), 1), True),
    Column("cosine vs fp32", lambda r: num(fid(r, "cosine_vs_fp32"), 4), True),
    Column("top-1 vs fp32", lambda r: pct(fid(r, "top1_agreement_vs_fp32")), True),
    Column("top-1 vs teacher", lambda r: pct(fid(r, "top1_agreement_vs_teacher")), True),
]


def columns_for(rows: list[dict], origin: bool = False) -> list[Column]:
    """The base columns, plus build and host when `origin`, plus the estimate a measurement
    replaced when there is one. Notes are long: renderers list them under the table."""
    cols = list(BASE_COLUMNS)
    if origin:
        cols[1:1] = [Column("build", lambda r: str(r.get("build"))),
                     Column("host", lambda r: host_label(r.get("host")))]
    if any(r.get("replaces") for r in rows):
        cols.append(Column("estimate (error)", estimate_error, True))
    return cols


def needs_origin(doc: dict, rows: list[dict]) -> bool:
    """Rows must name their build and host in a comparison or when they come from several."""
    return (len(doc.get("sources") or []) > 1 or len({r.get("build") for r in rows}) > 1
            or len({host_label(r.get("host")) for r in rows}) > 1)


def origin_text(row: dict) -> str:
    build, host = str(row.get("build")), host_label(row.get("host"))
    return build if build.endswith(f"@{host}") else f"{build} on {host}"


def notes(rows: list[dict]) -> list[tuple[str, str]]:
    """(artifact, note) for rows that carry a note (pending causes, failures, estimator inputs)."""
    return [(str(r.get("artifact")), " ".join(str(r["notes"]).split()))
            for r in rows if str(r.get("notes") or "").strip()]


def by_target(comparison: dict) -> list[tuple[str, dict, list[dict]]]:
    """(target name, target record, rows) in first-seen order."""
    names: list[str] = []
    for row in comparison.get("rows") or []:
        if row.get("target") not in names:
            names.append(row.get("target"))
    targets = comparison.get("targets") or {}
    return [(n, targets.get(n) or {"name": n}, [r for r in comparison["rows"] if r.get("target") == n]) for n in names]


def host_line(host: dict) -> str:
    """'name: CPU model, 2 logical / 1 physical cores, 23.4 GB RAM, ...; onnxruntime 1.32.0, ...'"""
    parts = [str(host.get("cpu_model") or "unknown CPU")]
    if host.get("cores_logical") or host.get("cores_physical"):
        parts.append(f"{host.get('cores_logical', '?')} logical / {host.get('cores_physical', '?')} physical cores")
    if isinstance(host.get("memory_gb"), (int, float)):
        parts.append(f"{host['memory_gb']:.1f} GB RAM")
    parts.extend(str(host[k]) for k in ("arch", "os") if host.get(k))
    if host.get("gpu"):
        parts.append(f"GPU {host['gpu']}")
    if host.get("isa"):
        parts.append("ISA " + " ".join(map(str, host["isa"])))
    versions = ", ".join(f"{k} {v}" for k, v in (host.get("versions") or {}).items())
    return f"{host_label(host)}: {', '.join(parts)}" + (f"; {versions}" if versions else "")


def hosts(comparison: dict) -> list[dict]:
    """Distinct hosts, in the order their sources appear."""
    seen, out = set(), []
    for src in comparison.get("sources") or []:
        line = host_line(src.get("host") or {})
        if line not in seen:
            seen.add(line)
            out.append(src.get("host") or {})
    return out


def source_line(src: dict) -> str:
    ev = src.get("eval") or {}
    bits = [f"build {src.get('build')}", f"target {src.get('target')}"]
    if src.get("student"):
        bits.append(f"student {src['student']}")
    if src.get("teacher"):
        bits.append(f"teacher {src['teacher']}")
    if ev.get("images"):
        bits.append(f"fidelity on {ev['images']} images ({ev.get('source', 'unknown source')})")
    return ", ".join(bits)


def title(comparison: dict) -> str:
    sources = comparison.get("sources") or []
    if len(sources) == 1:
        src = sources[0]
        return f"edgedistill report: {src.get('student') or src.get('build')} on {src.get('target')}"
    targets = ", ".join(dict.fromkeys(s.get("target") for s in sources))
    return f"edgedistill comparison: {len(sources)} builds ({targets})"


def budget_text(target: dict) -> str:
    parts = []
    if isinstance(target.get("min_cosine"), (int, float)):
        parts.append(f"cosine ≥ {target['min_cosine']:g}")
    if isinstance(target.get("min_top1_agreement"), (int, float)):
        parts.append(f"top-1 agreement ≥ {target['min_top1_agreement']:g}")
    return ", ".join(parts) or "none"


def effective_selections(doc: dict) -> list[dict]:
    """Each input's selection, except an empty one for a target that another input (the device's
    own measured bench) did select for: a host that could only estimate has nothing to add there."""
    sels = doc.get("selected") or []
    covered = {s.get("target") for s in sels if s.get("artifact") is not None}
    return [s for s in sels if s.get("artifact") is not None or s.get("target") not in covered]


def selected_for(doc: dict, target: str) -> list[dict]:
    return [s for s in effective_selections(doc) if s.get("target") == target]


ESTIMATE_NOTE = ("≈ marks an estimate from the target's published peak compute and bandwidth, "
                 "not a measurement; measure it on the device with `edgedistill bench`.")
