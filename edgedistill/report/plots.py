"""Plots for the HTML report, drawn with matplotlib's Agg canvas and returned as base64 PNG.

No pyplot: a library must not switch the process-wide backend or keep figures alive.
matplotlib is imported inside the functions so `import edgedistill.report` stays cheap.
"""

from __future__ import annotations

import base64
import io
import math

from .content import DASH, latency, varies
from .merge import host_label
from .schema import fidelity_of, p50_of

_COLORS = {"onnxruntime": "#1f6feb", "openvino": "#8250df", "tensorrt": "#2da44e"}
_OTHER = "#6e7781"
_DPI = 110


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of points no other point beats on both lower latency and higher fidelity,
    ordered by latency."""
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1]))
    front, best = [], float("-inf")
    for i in order:
        if points[i][1] > best:
            front.append(i)
            best = points[i][1]
    return front


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=_DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _png(fig) -> str:
    buf = io.BytesIO()
    # No metadata: the same report renders to the same bytes.
    fig.savefig(buf, format="png", dpi=_DPI, metadata={"Software": None})
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _label(row: dict, with_origin: bool, tags: tuple = ()) -> str:
    """The point's or bar's name; `tags` ("device", "batch") are added where the plotted rows differ in
    them, so a CPU p50 or a batch-8 p50 is never read as one of its neighbours."""
    name = str(row.get("artifact"))
    name = f"{name} @ {host_label(row.get('host'))}" if with_origin else name
    shown = [str(row.get("device")) if key == "device" else f"batch {row.get('batch')}" for key in tags]
    return f"{name} ({', '.join(shown)})" if shown else name


def _tags(rows: list[dict]) -> tuple:
    return tuple(key for key in ("device", "batch") if varies(rows, key))


def latency_fidelity_png(rows: list[dict], min_cosine: float | None = None,
                         with_origin: bool = False) -> tuple[str | None, list[str]]:
    """Scatter of p50 latency vs cosine for one target, Pareto front over measured points.

    Returns (base64 PNG or None when nothing can be placed, labels of rows left out)."""
    placed = [r for r in rows if p50_of(r) is not None and fidelity_of(r, "cosine_vs_fp32") is not None]
    tags = _tags(placed)
    left_out = [f"{_label(r, with_origin)} ({r.get('status')})" for r in rows if r not in placed]
    if not placed:
        return None, left_out
    fig = _figure(7.2, 4.2)
    ax = fig.add_subplot()
    xs = [p50_of(r) for r in placed]
    ys = [fidelity_of(r, "cosine_vs_fp32") for r in placed]
    log = max(xs) / max(min(xs), 1e-9) > 20
    mid = math.sqrt(min(xs) * max(xs)) if log else (min(xs) + max(xs)) / 2
    for row, x, y in zip(placed, xs, ys):
        color = _COLORS.get(str(row.get("backend")), _OTHER)
        estimated = row.get("status") != "measured"
        ax.scatter([x], [y], s=70, zorder=3, linewidths=1.8, edgecolors=color,
                   facecolors="white" if estimated else color, marker="o")
        if row.get("selected"):
            ax.scatter([x], [y], s=260, zorder=2, facecolors="none", edgecolors="#bf8700", linewidths=2)
    measured = [i for i, r in enumerate(placed) if r.get("status") == "measured"]
    front = [measured[i] for i in pareto_front([(xs[i], ys[i]) for i in measured])]
    if front:
        ax.step([xs[i] for i in front], [ys[i] for i in front], where="post", color="#cf222e",
                linestyle="--", linewidth=1.2, label="Pareto front (measured)", zorder=1)
    if isinstance(min_cosine, (int, float)):
        ax.axhline(min_cosine, color="#57606a", linestyle=":", linewidth=1, label=f"budget: cosine ≥ {min_cosine:g}")
    _legend_markers(ax, any(r.get("status") != "measured" for r in placed))
    if log:
        ax.set_xscale("log")
    ax.margins(x=0.25, y=0.15)
    if not log:
        ax.set_xlim(left=max(0.0, ax.get_xlim()[0]))
    labels = [_label(r, with_origin, tags) + ("" if r.get("status") == "measured" else " (estimated)") for r in placed]
    _place_labels(fig, ax, xs, ys, labels, mid)
    ax.set_xlabel("p50 latency (ms, lower is better)")
    ax.set_ylabel("cosine vs fp32 (higher is better)")
    ax.grid(True, alpha=0.3)
    return _png(fig), left_out


def _place_labels(fig, ax, xs, ys, labels, mid) -> None:
    """Put each label at the first offset where it stays inside the axes and overlaps no marker,
    legend or earlier label (measured with the renderer); right-half points try the left first."""
    from matplotlib.transforms import Bbox

    fig.canvas.draw()  # run the layout first so pixel positions are the final ones
    renderer = fig.canvas.get_renderer()
    taken = [Bbox.from_bounds(px - 7, py - 7, 14, 14) for px, py in ax.transData.transform(list(zip(xs, ys)))]
    if ax.get_legend() is not None:
        taken.append(ax.get_legend().get_window_extent(renderer))
    inside = ax.get_window_extent(renderer)
    for x, y, text in zip(xs, ys, labels):
        right = x > mid and len(xs) > 1
        sides = [(-7, "right"), (7, "left")] if right else [(7, "left"), (-7, "right")]
        tries = [(dx, dy, ha) for dy in (6, -14, 16, -24) for dx, ha in sides]
        for n, (dx, dy, ha) in enumerate(tries):
            ann = ax.annotate(text, (x, y), textcoords="offset points", xytext=(dx, dy), ha=ha, fontsize=8)
            box = ann.get_window_extent(renderer)
            fits = inside.x0 <= box.x0 and box.x1 <= inside.x1 and inside.y0 <= box.y0 and box.y1 <= inside.y1
            if n == len(tries) - 1 or (fits and not any(box.overlaps(t) for t in taken)):
                taken.append(box)
                break
            ann.remove()


def _legend_markers(ax, has_estimates: bool) -> None:
    ax.scatter([], [], s=50, color=_OTHER, label="measured")
    if has_estimates:
        ax.scatter([], [], s=50, facecolors="white", edgecolors=_OTHER, linewidths=1.8, label="estimated (hollow)")
    ax.scatter([], [], s=150, facecolors="none", edgecolors="#bf8700", linewidths=2, label="selected")
    ax.legend(fontsize=8, loc="lower right", framealpha=0.9)


def latency_bars_png(rows: list[dict], with_origin: bool = False) -> str | None:
    """Horizontal p50 bars per device and artifact, a whisker to p99; estimates hatched."""
    bars = [r for r in rows if p50_of(r) is not None]
    if not bars:
        return None
    tags = _tags(bars)
    fig = _figure(7.2, 0.42 * len(bars) + 1.3)
    ax = fig.add_subplot()
    labels, top = [], 0.0
    for y, row in enumerate(bars):
        p50 = p50_of(row)
        p99 = (row.get("latency_ms") or {}).get("p99") if latency(row, "p99") != DASH else None  # the tables' rule: no p99 of a few samples
        color = _COLORS.get(str(row.get("backend")), _OTHER)
        estimated = row.get("status") != "measured"
        ax.barh(y, p50, height=0.6, color="white" if estimated else color, edgecolor=color,
                hatch="///" if estimated else None, linewidth=1.2)
        end = p50
        if isinstance(p99, (int, float)) and p99 > p50:
            ax.plot([p50, p99], [y, y], color="#24292f", linewidth=1)
            ax.plot([p99, p99], [y - 0.15, y + 0.15], color="#24292f", linewidth=1)
            end = p99
        top = max(top, end)
        ax.text(end, y, f"  p50 {'≈' if estimated else ''}{p50:.2f} ms" + (" (estimated)" if estimated else ""),
                va="center", fontsize=8)
        labels.append(f"{row.get('target')} · {_label(row, with_origin, tags)}")
    ax.set_yticks(range(len(bars)), labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, top * 1.35)
    ax.set_xlabel("p50 latency (ms); whisker to p99; hatched = estimated")
    ax.grid(True, axis="x", alpha=0.3)
    return _png(fig)
