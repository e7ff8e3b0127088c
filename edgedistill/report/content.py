"""What every renderer shows (markdown, HTML, console): the columns, host lines and per-target groups.

Defining the cells once keeps the three outputs telling the same story. Cells are plain text;
each renderer escapes them for its own format.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import ROUND_FLOOR, Decimal
from typing import Callable

from .merge import host_label
from .schema import as_number

DASH = "—"


@dataclass(frozen=True)
class Column:
    header: str
    cell: Callable[[dict], str]
    numeric: bool = False
    short: str = ""  # the console's header, where the terminal is narrow

    @property
    def console_header(self) -> str:
        return self.short or self.header


def num(value, digits: int = 2) -> str:
    value = as_number(value)
    return f"{value:.{digits}f}" if value is not None else DASH


def _down(value: float, places: int, scale: int = 1) -> str:
    """`value * scale` cut (not rounded) to `places` decimals, in decimal arithmetic from the shortest
    repr, so 0.98 stays 0.98 and 0.995 is 99.5 (binary floats would make them 0.9799 and 99.4)."""
    if abs(value * scale) >= 1e12:  # no fidelity figure, and beyond what Decimal's 28 digits can quantize
        return f"{value * scale:.{places}f}"
    return str((Decimal(repr(value)) * scale).quantize(Decimal(1).scaleb(-places), rounding=ROUND_FLOOR))


def fidelity_num(value) -> str:
    """A fidelity figure with 4 decimals, rounded down: budgets are minimums, so 0.97996 must not
    read 0.9800 beside a 0.98 budget it misses (0.9799 does; a figure shown at its budget meets it)."""
    value = as_number(value)
    if value is None:
        return DASH
    return _down(value, 4) if math.isfinite(value) else f"{value:.4f}"


def fidelity_pct(value) -> str:
    """A fidelity share as a percentage with one decimal, rounded down as fidelity_num is."""
    value = as_number(value)
    if value is None:
        return DASH
    return f"{_down(value, 1, 100)}%" if math.isfinite(value) else f"{value * 100:.1f}%"


def status_text(row: dict) -> str:
    """The status as recorded; a measured row that replaced an estimate shows that in its own column."""
    return str(row.get("status") or "unknown")


def ms(value) -> str:
    """Milliseconds: two decimals, three below 0.1 ms so tiny models do not all read 0.04."""
    value = as_number(value)
    if value is None:
        return DASH
    return f"{value:.3f}" if abs(value) < 0.1 else f"{value:.2f}"


def approx(row: dict, text: str) -> str:
    # "≈" marks an estimator's figure so it is never read as a measurement.
    return f"≈{text}" if row.get("status") == "estimated" and text != DASH else text


def latency(row: dict, key: str) -> str:
    """One latency percentile; estimates have only a p50 (p90/p99 are null) and show a dash there."""
    return approx(row, ms((row.get("latency_ms") or {}).get(key)))


def fid(row: dict, key: str) -> object:
    return (row.get("fidelity") or {}).get(key)


def estimate_error(row: dict) -> str:
    """How far the roofline estimate was from this row's measurement: '≈1.90 ms (-20.8%)'.

    Two sources: the host's estimate that a device measurement replaced (merge.py), and the
    row's own `estimate` (bench.efficiency_from: what the estimator would have said for it)."""
    parts = []
    for rep in row.get("replaces") or []:
        if rep.get("status") == "estimated":
            parts.append(_est_text((rep.get("latency_ms") or {}).get("p50"), rep.get("estimate_error_pct")))
            break
    own = row.get("estimate") if isinstance(row.get("estimate"), dict) else {}
    if row.get("status") == "measured" and isinstance(own.get("error_pct"), (int, float)):
        text = _est_text(own.get("p50_ms"), own.get("error_pct"))
        if text not in parts:
            parts.append(text)
    return "; ".join(parts) or DASH


def _est_text(p50, err) -> str:
    shown = f"≈{ms(p50)} ms" if isinstance(p50, (int, float)) else "estimate"
    return f"{shown} ({err:+.1f}%)" if isinstance(err, (int, float)) else shown


def ips(value) -> str:
    """Images per second: one decimal, none from 1000 up."""
    value = as_number(value)
    if value is None:
        return DASH
    return f"{value:.0f}" if abs(value) >= 1000 else f"{value:.1f}"


def _throughput(row: dict) -> str:
    return approx(row, ips(row.get("throughput_ips")))


def sweep(row: dict) -> list[dict]:
    """The row's throughput entries by batch size (bench.batch_sizes), [] when it has none."""
    entries = row.get("throughput")
    if not isinstance(entries, list):
        return []
    return sorted((t for t in entries if isinstance(t, dict)), key=lambda t: t.get("batch") or 0)


def throughput_by_batch(row: dict) -> str:
    """'b1 2942 / b4 7417': throughput at each batch size measured (a failed size shows a dash);
    a row without a sweep shows its one figure at its batch."""
    entries = sweep(row)
    if not entries:
        text = _throughput(row)
        return text if text == DASH else f"b{row.get('batch') or 1} {text}"
    return " / ".join(f"b{t.get('batch')} {approx(row, ips(t.get('throughput_ips')))}" for t in entries)


def peak_memory(row: dict) -> str:
    """'988 (+1.4)': the process's peak RSS while the artifact loaded and ran, and its rise over
    the RSS just before; ', GPU 120' where GPU memory was sampled."""
    mem = row.get("memory") if isinstance(row.get("memory"), dict) else {}
    peak, delta, gpu = mem.get("peak_rss_mb"), mem.get("peak_rss_delta_mb"), mem.get("gpu_mb")
    parts = []
    if isinstance(peak, (int, float)):
        parts.append(f"{peak:.0f}" + (f" (+{delta:.1f})" if isinstance(delta, (int, float)) else ""))
    if isinstance(gpu, (int, float)):
        parts.append(f"GPU {gpu:.0f}")
    return ", ".join(parts) or DASH


BASE_COLUMNS = [
    Column("artifact", lambda r: str(r.get("artifact") or DASH)),
    Column("backend", lambda r: str(r.get("backend") or DASH)),
    Column("precision", lambda r: str(r.get("precision") or DASH), short="prec."),
    Column("status", status_text),
    Column("p50 ms", lambda r: latency(r, "p50"), True),
    Column("p90 ms", lambda r: latency(r, "p90"), True),
    Column("p99 ms", lambda r: latency(r, "p99"), True),
    Column("img/s", _throughput, True),
    Column("size MB", lambda r: num(r.get("size_mb"), 1), True, short="MB"),
    Column("cosine vs fp32", lambda r: fidelity_num(fid(r, "cosine_vs_fp32")), True, short="cosine"),
    Column("top-1 vs fp32", lambda r: fidelity_pct(fid(r, "top1_agreement_vs_fp32")), True, short="top-1 fp32"),
    Column("top-1 vs teacher", lambda r: fidelity_pct(fid(r, "top1_agreement_vs_teacher")), True, short="top-1 teacher"),
]

# Shown only when some row has them (a labelled bench.eval_dir, a memory probe, an estimate to check).
KNN = Column("kNN top-1", lambda r: fidelity_pct(fid(r, "knn_top1")), True, short="kNN")
PROBE = Column("linear probe top-1", lambda r: fidelity_pct(fid(r, "linear_probe_top1")), True, short="probe")
# The memory fields are MiB (2**20 bytes, as nvidia-smi's figures are); size_mb is SI MB (10**6 bytes).
MEMORY = Column("peak mem MiB", peak_memory, True, short="mem MiB")
# Shown only when a table's rows differ in them: p50s of two devices or two batch sizes side by side
# would otherwise read as one comparison.
DEVICE = Column("device", lambda r: str(r.get("device") or DASH))
BATCH = Column("batch", lambda r: str(r.get("batch") or DASH), True)
ESTIMATE = Column("estimate (error)", estimate_error, True, short="estimate (err)")


def varies(rows: list[dict], key: str) -> bool:
    """Whether the rows hold more than one value of `key` (e.g. two devices, two bench.batch values)."""
    return len({str(r.get(key)) for r in rows}) > 1


def columns_for(rows: list[dict], origin: bool = False) -> list[Column]:
    """The base columns, plus build and host when `origin`, plus device and batch when the rows
    differ in them, plus optional columns when any row has their data: kNN / linear-probe top-1,
    peak memory and the estimate's error against a measurement. With a batch sweep the img/s
    column lists each batch size. Notes are long: renderers list them under the table."""
    cols = list(BASE_COLUMNS)
    at = next(i for i, c in enumerate(cols) if c.header == "status")
    cols[at:at] = [c for c, key in ((DEVICE, "device"), (BATCH, "batch")) if varies(rows, key)]
    if origin:
        cols[1:1] = [Column("build", lambda r: str(r.get("build"))),
                     Column("host", lambda r: host_label(r.get("host")))]
    if any(len(sweep(r)) > 1 for r in rows):
        at = next(i for i, c in enumerate(cols) if c.header == "img/s")
        cols[at] = Column("img/s", throughput_by_batch, True)
    cols += [c for c, key in ((KNN, "knn_top1"), (PROBE, "linear_probe_top1"))
             if any(fid(r, key) is not None for r in rows)]
    if any(peak_memory(r) != DASH for r in rows):
        cols.append(MEMORY)
    if any(estimate_error(r) != DASH for r in rows):
        cols.append(ESTIMATE)
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
    """'name: CPU model, 2 logical / 1 physical cores, 23.4 GiB RAM, ...; onnxruntime 1.32.0, ...'"""
    parts = [str(host.get("cpu_model") or "unknown CPU")]
    if host.get("cores_logical") or host.get("cores_physical"):
        parts.append(f"{host.get('cores_logical', '?')} logical / {host.get('cores_physical', '?')} physical cores")
    if isinstance(host.get("memory_gb"), (int, float)):
        parts.append(f"{host['memory_gb']:.1f} GiB RAM")  # memory_gb is total / 2**30
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


def target_text(target: dict) -> str:
    """The device and toolchain a target's rows are for: 'NVIDIA Jetson AGX Orin 64GB; TensorRT 10.3, JetPack 6.1'."""
    description = str(target.get("description") or "")
    toolchain = [f"{label} {target[key]}" for key, label in (("tensorrt_version", "TensorRT"), ("jetpack", "JetPack"), ("dla_core", "DLA core"))
                 if target.get(key) is not None]
    toolchain = [part for part in toolchain if part not in description]  # bundled Jetson descriptions name theirs already
    return "; ".join(part for part in (description, ", ".join(toolchain)) if part)


def budget_text(target: dict) -> str:
    parts = []
    if isinstance(target.get("min_cosine"), (int, float)):
        parts.append(f"cosine ≥ {target['min_cosine']:g}")
    if isinstance(target.get("min_top1_agreement"), (int, float)):
        parts.append(f"top-1 agreement ≥ {target['min_top1_agreement']:g}")
    return ", ".join(parts) or "none"


def effective_selections(doc: dict) -> list[dict]:
    """Each input's selection. An empty one (a host that could only estimate) is left out only when a
    device measurement of that same build's model took its rows' place (merge.py); another model's
    measurement on the same target says nothing about this one."""
    rows = doc.get("rows") or []

    def measured_elsewhere(sel: dict) -> bool:
        return any(r.get("target") == sel.get("target") and any(p.get("build") == sel.get("build") for p in r.get("replaces") or [])
                   for r in rows)

    return [s for s in doc.get("selected") or [] if s.get("artifact") is not None or not measured_elsewhere(s)]


def selected_for(doc: dict, target: str) -> list[dict]:
    return [s for s in effective_selections(doc) if s.get("target") == target]


ESTIMATE_NOTE = ("≈ marks an estimate from the target's published peak compute and bandwidth, "
                 "not a measurement; measure it on the device with `edgedistill bench`.")
