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
    key: str = ""  # what renderers look a column up by, where its header varies (img/s names how it was measured)

    @property
    def console_header(self) -> str:
        return self.short or self.header

    @property
    def id(self) -> str:
        return self.key or self.header


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


# Below this many timed samples p99 is in effect the slowest sample (docs/benchmarking.md): shown as a dash.
MIN_P99_SAMPLES = 100


def samples(row: dict) -> int | None:
    """How many timed samples a row's latency rests on, None where not recorded (estimates)."""
    n = (row.get("latency_ms") or {}).get("iterations")
    return n if isinstance(n, int) and not isinstance(n, bool) else None


def latency(row: dict, key: str) -> str:
    """One latency percentile; estimates have only a p50 (p90/p99 are null) and show a dash there,
    and so does a p99 of fewer than MIN_P99_SAMPLES samples."""
    if key == "p99" and (samples(row) or MIN_P99_SAMPLES) < MIN_P99_SAMPLES:
        return DASH
    return approx(row, ms((row.get("latency_ms") or {}).get(key)))


def _span(values) -> str:
    """'5' or '5–9'."""
    low, high = min(values), max(values)
    return f"{low}" if low == high else f"{low}–{high}"


def timing_note(rows: list[dict]) -> str:
    """'timed: 5–9 samples per artifact, stopped by the time budget ...': what the percentiles rest on."""
    timed = [r for r in rows if r.get("status") == "measured" and samples(r) is not None]
    if not timed:
        return ""
    counts = [samples(r) for r in timed]
    by_stop: dict[str, list[str]] = {}
    for r in timed:
        by_stop.setdefault(str((r.get("latency_ms") or {}).get("stopped_by")), []).append(str(r.get("artifact")))
    text = f"timed: {_span(counts)} samples per artifact"
    stops = {"time_budget": "the time budget (bench.time_budget_s)", "iterations": "the iteration count (bench.iterations)"}
    known = [k for k in stops if k in by_stop]
    if len(known) == 1 and len(by_stop) == 1:
        text += f", stopped by {stops[known[0]]}"
    elif known:
        text += ", stopped by " + "; ".join(f"{stops[k]} for {', '.join(by_stop[k])}" for k in known)
    if min(counts) < MIN_P99_SAMPLES:
        text += f"; p99 not shown below {MIN_P99_SAMPLES} samples"
    if "time_budget" in by_stop:
        low = min(samples(r) for r in timed if r["artifact"] in by_stop["time_budget"])
        text += f"; p50, p90 and the selection rest on as few as {low} samples"
    return text


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


def sweep(row: dict) -> list[dict]:
    """The row's throughput entries by batch size (bench.batch_sizes), [] when it has none."""
    entries = row.get("throughput")
    if not isinstance(entries, list):
        return []
    return sorted((t for t in entries if isinstance(t, dict)), key=lambda t: t.get("batch") or 0)


def entry_mode(entry: dict) -> str | None:
    """'async' or 'sync' for a measured throughput entry (bench.json written before `mode` timed one sync request)."""
    if entry.get("status", "measured") != "measured" or as_number(entry.get("throughput_ips")) is None:
        return None
    return "async" if entry.get("mode") == "async" else "sync"


def row_mode(row: dict) -> str | None:
    """How a measured row's own img/s (at its batch) was timed; None for estimates and rows without one."""
    if row.get("status") != "measured" or as_number(row.get("throughput_ips")) is None:
        return None
    main = next((t for t in sweep(row) if t.get("batch") == row.get("batch")), {})
    return entry_mode(main) or "sync"


def _modes(rows: list[dict]) -> set[str]:
    """The kinds of measured img/s figure in `rows`: their own and their sweep's."""
    return {m for r in rows for m in [row_mode(r), *(entry_mode(t) for t in sweep(r) if r.get("status") == "measured")] if m}


def throughput_header(rows: list[dict]) -> tuple[str, str]:
    """(header, console header): 'img/s (1 sync request)', 'img/s (async, 2 streams)', or 'img/s' where the
    rows mix the two (each figure is then tagged): a sync and an async figure measure different things. The
    console's puts the qualifier on a second line, where it costs no width."""
    modes = _modes(rows)
    if modes == {"sync"}:
        return "img/s (1 sync request)", "img/s\n(sync)"
    if modes == {"async"}:
        streams = {t.get("streams") for r in rows if r.get("status") == "measured" for t in sweep(r) if entry_mode(t) == "async"}
        n = next(iter(streams)) if len(streams) == 1 else None
        header = f"img/s (async, {n} stream{'s' if n != 1 else ''})" if isinstance(n, int) else "img/s (async)"
        return header, "img/s\n(async)"
    return "img/s", "img/s"


def _throughput_cell(row: dict, tag: bool) -> str:
    text = approx(row, ips(row.get("throughput_ips")))
    mode = row_mode(row)
    return f"{text} {mode}" if tag and mode and text != DASH else text


def _by_batch_cell(row: dict, tag: bool) -> str:
    """'b1 2942 / b4 7417': throughput at each batch size measured (a failed size shows a dash);
    a row without a sweep shows its one figure at its batch. Where a table mixes sync and async
    figures each is tagged (the HTML puts each batch on a line of its own)."""
    entries = sweep(row)
    if not entries:
        text = _throughput_cell(row, tag)
        return text if text == DASH else f"b{row.get('batch') or 1} {text}"
    return " / ".join(f"b{t.get('batch')} {approx(row, ips(t.get('throughput_ips')))}"
                      + (f" {entry_mode(t)}" if tag and entry_mode(t) else "") for t in entries)


def throughput_columns(rows: list[dict]) -> tuple[Column, Column]:
    """The img/s column for these rows: (the row's own batch only, every batch of the sweep)."""
    (header, short), tag = throughput_header(rows), len(_modes(rows)) > 1
    return (Column(header, lambda r: _throughput_cell(r, tag), True, short=short, key="img/s"),
            Column(header, lambda r: _by_batch_cell(r, tag), True, short=short, key="img/s"))


def _counted(entries: list[dict], key: str, noun: str, after: str = "") -> str:
    """'2 streams', '1 request in flight', '5–9 requests timed ...' from the entries' `key`; '' where none has it."""
    values = [t[key] for t in entries if isinstance(t.get(key), int)]
    if not values:
        return ""
    return f"{_span(values)} {noun}{'' if max(values) == 1 else 's'}{after}"


def throughput_note(rows: list[dict]) -> str:
    """What each kind of img/s figure in `rows` is: they differ by up to several times on a many-core CPU."""
    modes = _modes(rows)
    parts = []
    if "sync" in modes:
        ov = any(r.get("backend") == "openvino" and row_mode(r) == "sync" for r in rows)
        parts.append("sync = one synchronous request at a time, batch × 1000 / its mean latency"
                     + (" (OpenVINO under its LATENCY hint)" if ov else ""))
    if "async" in modes:
        entries = [t for r in rows if r.get("status") == "measured" for t in sweep(r) if entry_mode(t) == "async"]
        setup = ", ".join(text for text in (_counted(entries, "streams", "stream"), _counted(entries, "nireq", "request", " in flight"),
                                            _counted(entries, "requests", "request", " timed per batch size")) if text)
        parts.append("async = OpenVINO's THROUGHPUT hint" + (f" ({setup})" if setup else "")
                     + ", images done / wall time, as benchmark_app -hint throughput measures")
    return ("img/s: " + "; ".join(parts)) if parts else ""


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
    Column("img/s", lambda r: approx(r, ips(r.get("throughput_ips"))), True),  # columns_for labels it (throughput_columns)
    Column("size MB", lambda r: num(r.get("size_mb"), 1), True, short="MB"),
    Column("cosine vs fp32", lambda r: fidelity_num(fid(r, "cosine_vs_fp32")), True, short="cosine"),
    Column("top-1 vs fp32", lambda r: fidelity_pct(fid(r, "top1_agreement_vs_fp32")), True, short="top-1 fp32"),
    Column("top-1 vs teacher", lambda r: fidelity_pct(fid(r, "top1_agreement_vs_teacher")), True, short="top-1 teacher"),
]

# Shown only when some row has them (a labelled bench.eval_dir, a memory probe, an estimate to check).
KNN = Column("kNN top-1", lambda r: fidelity_pct(fid(r, "knn_top1")), True, short="kNN")
PROBE = Column("linear probe top-1", lambda r: fidelity_pct(fid(r, "linear_probe_top1")), True, short="probe")
# the `logits` output's top-1 against the folder's labels, when the student's classes are the folder's
TASK = Column("task top-1", lambda r: fidelity_pct(fid(r, "task_top1")), True, short="task")
# the `embedding` output's zero-shot top-1 against the folder's labels, through the open_clip teacher's class prompts
ZERO_SHOT = Column("zero-shot top-1", lambda r: fidelity_pct(fid(r, "zero_shot_top1")), True, short="0-shot")
# with a zero-shot head: on the evaluation set, the share of images whose zero-shot class is the fp32 model's / the teacher's
ZERO_SHOT_FP32 = Column("zero-shot vs fp32", lambda r: fidelity_pct(fid(r, "zero_shot_agreement_vs_fp32")), True, short="0-shot fp32")
ZERO_SHOT_TEACHER = Column("zero-shot vs teacher", lambda r: fidelity_pct(fid(r, "zero_shot_agreement_vs_teacher")), True,
                           short="0-shot teacher")
# The memory fields are MiB (2**20 bytes, as nvidia-smi's figures are); size_mb is SI MB (10**6 bytes).
MEMORY = Column("peak mem MiB", peak_memory, True, short="mem MiB")
# Shown only when a table's rows differ in them: p50s of two devices or two batch sizes side by side
# would otherwise read as one comparison. Batch also whenever a row's is not 1: a p50 at batch 4 read as
# a single image's would be 4 times off.
DEVICE = Column("device", lambda r: str(r.get("device") or DASH))
BATCH = Column("batch", lambda r: str(r.get("batch") or DASH), True)
ESTIMATE = Column("estimate (error)", estimate_error, True, short="estimate (err)")


def varies(rows: list[dict], key: str) -> bool:
    """Whether the rows hold more than one value of `key` (e.g. two devices, two bench.batch values)."""
    return len({str(r.get(key)) for r in rows}) > 1


def shows_batch(rows: list[dict]) -> bool:
    """Whether a table needs its batch column: rows differ in batch, or one's is not 1."""
    return varies(rows, "batch") or any(r.get("batch") not in (None, 1) for r in rows)


def columns_for(rows: list[dict], origin: bool = False) -> list[Column]:
    """The base columns, plus build and host when `origin`, plus device when the rows differ in it and
    batch when they differ in it or one is not 1, plus optional columns when any row has their data:
    kNN / linear-probe top-1, peak memory and the estimate's error against a measurement. The img/s
    header says how it was measured (throughput_header); with a batch sweep it lists each batch size.
    Notes are long: renderers list them under the table."""
    cols = list(BASE_COLUMNS)
    at = next(i for i, c in enumerate(cols) if c.header == "status")
    cols[at:at] = [c for c, shown in ((DEVICE, varies(rows, "device")), (BATCH, shows_batch(rows))) if shown]
    if origin:
        cols[1:1] = [Column("build", lambda r: str(r.get("build"))),
                     Column("host", lambda r: host_label(r.get("host")))]
    own, by_batch = throughput_columns(rows)
    at = next(i for i, c in enumerate(cols) if c.header == "img/s")
    cols[at] = by_batch if any(len(sweep(r)) > 1 for r in rows) else own
    cols += [c for c, key in ((ZERO_SHOT_FP32, "zero_shot_agreement_vs_fp32"), (ZERO_SHOT_TEACHER, "zero_shot_agreement_vs_teacher"),
                              (TASK, "task_top1"), (ZERO_SHOT, "zero_shot_top1"), (KNN, "knn_top1"), (PROBE, "linear_probe_top1"))
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
