"""Put the estimator into bench.json: roofline_ms on measured rows, and estimated rows for a device not here.

Estimated rows keep the names the device's own measured rows will have (e.g. tensorrt-int8), so
`edgedistill report` replaces them by an imported measurement and prints the estimate's error.
"""

from __future__ import annotations

from pathlib import Path

from .efficiency import choose
from .graph_cost import op_costs, sig, summarize
from .peaks import Peaks
from .roofline import roofline_ms


def float_precision(precision: str, device: str, peaks: Peaks) -> str:
    """The precision non-quantized ops run in: fp16 for fp16 engines, and for int8 engines on
    accelerators with an fp16 peak (TensorRT/OpenVINO GPU fall back to fp16 there), else fp32."""
    if precision == "fp16" or (precision == "int8" and device.upper() != "CPU" and peaks.tflops_fp16):
        return "fp16"
    return "fp32"


def cost_graph(row: dict, onnx_paths: dict[str, Path]) -> tuple[Path | None, bool]:
    """(ONNX file whose graph stands for this row's artifact, treat matmuls as int8)."""
    own = onnx_paths.get(row["name"])
    if own is not None:
        return own, False
    if row.get("precision") == "int8" and "onnxruntime-int8" in onnx_paths:
        return onnx_paths["onnxruntime-int8"], False  # the QDQ graph the int8 engine is built from
    fp32 = onnx_paths.get("onnx-fp32")
    return fp32, row.get("precision") == "int8"


def roofline_for(row: dict, onnx_paths: dict[str, Path], peaks: Peaks, device: str, batch: int | None = None) -> tuple[float | None, dict]:
    path, int8_ops = cost_graph(row, onnx_paths)
    if path is None:
        return None, {"missing": "no ONNX graph"}
    costs = op_costs(path, batch or row.get("batch") or 1, float_precision(row.get("precision", "fp32"), device, peaks), int8_ops)
    ms, detail = roofline_ms(costs, peaks)
    return ms, {**summarize(costs), **detail, "graph": path.name}


def add_roofline(rows: list[dict], onnx_paths: dict[str, Path], peaks: Peaks, device: str) -> None:
    """roofline_ms on each measured row that ran on `device`, whose `peaks` these are: what the
    efficiency factor is learned from (a CPU row on a GPU target would teach it CPU speed at GPU peaks)."""
    for row in rows:
        if row.get("status") == "measured" and (row.get("device") or device) == device:
            ms, _ = roofline_for(row, onnx_paths, peaks, device)
            row["roofline_ms"] = None if ms is None else sig(ms)


def estimate_row(row: dict, onnx_paths: dict[str, Path], peaks: Peaks, target: str, device: str, samples: list) -> bool:
    """Turn a pending row into an estimated one in place; False (row unchanged) when it cannot be estimated."""
    ms, detail = roofline_for(row, onnx_paths, peaks, device)
    if ms is None:
        row["notes"] = f"{row.get('notes', '')}; no estimate: {detail}".lstrip("; ")
        return False
    eff, source = choose(samples, target, row.get("backend", ""), row.get("precision", ""))
    p50 = ms / eff
    batch = row.get("batch") or 1
    peak = peaks.compute(row["precision"]) / 1e12
    unit = "TOPS" if row["precision"] == "int8" else "TFLOPS"
    row.update(status="estimated", threads=None,
               latency_ms={"p50": sig(p50), "p90": None, "p99": None, "mean": sig(p50), "std": None, "min": None, "max": None},
               throughput_ips=sig(batch * 1000.0 / p50),
               estimate={**detail, "efficiency": sig(eff), "efficiency_source": source, "peaks": peaks.as_dict()})
    est_note = (f"roofline estimate: {detail['gflop_float']:.3g} GFLOP + {detail['gop_int8']:.3g} GOP int8 at {peak:g} {unit} "
                f"{row['precision']}, {detail['mb_moved']:.3g} MB at {peaks.bandwidth_gbs} GB/s, {eff:.0%} efficiency ({source})")
    row["notes"] = f"{est_note}; {row['notes']}" if row.get("notes") else est_note
    return True


def predict_measured(rows: list[dict], samples: list, target: str) -> None:
    """With efficiency from other runs (bench.efficiency_from), record what the estimator would have
    said for each measured row and how far off it was: `estimate: {p50_ms, error_pct, ...}`."""
    for row in rows:
        roof, p50 = row.get("roofline_ms"), (row.get("latency_ms") or {}).get("p50")
        if row.get("status") != "measured" or not roof or not p50 or not samples:
            continue
        eff, source = choose(samples, target, row.get("backend", ""), row.get("precision", ""))
        est = roof / eff
        row["estimate"] = {"p50_ms": sig(est), "error_pct": round((est - p50) / p50 * 100.0, 2), "efficiency": sig(eff), "efficiency_source": source}
