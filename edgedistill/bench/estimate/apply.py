"""Put the estimator into bench.json: roofline_ms on measured rows, and estimated rows for a device not here.

Estimated rows keep the names the device's own measured rows will have (e.g. tensorrt-int8), so
`edgedistill report` replaces them by an imported measurement and prints the estimate's error.
"""

from __future__ import annotations

from pathlib import Path

from ...backends.openvino_backend import AUTO_HINTS
from ...device_names import device_family
from .efficiency import choose
from .graph_cost import QDQ_OPS, op_costs, sig, summarize
from .peaks import Peaks
from .roofline import roofline_ms


def qdq_fused(backend: str, device: str) -> bool:
    """Whether the runtime fuses a QDQ graph's Q/DQ into int8 kernels. ONNX Runtime on a GPU runs its CUDA
    provider (backends/onnxruntime_backend.py), which does not: its QDQ -> QLinear rewrites are the CPU
    provider's, so each Q/DQ runs as a kernel of its own and the matmul after it in fp32."""
    return not (backend == "onnxruntime" and device_family(device) == "GPU")


def float_precision(precision: str, device: str, peaks: Peaks, backend: str = "") -> str:
    """The precision non-quantized ops run in. OpenVINO: the INFERENCE_PRECISION_HINT bench compiles with
    (openvino_backend.AUTO_HINTS: f32 on CPU, GPU and AUTO, whatever the IR's weights; none on the NPU, which
    computes f16). Otherwise fp16 for fp16 engines, and for int8 engines on accelerators with an fp16 peak
    (TensorRT's int8 engines fall back to fp16 there), else fp32 (ONNX Runtime's CUDA provider runs a graph
    in the float type it was exported in)."""
    if backend == "openvino":
        return "fp32" if AUTO_HINTS.get(device_family(device)) == "f32" else "fp16"
    if precision == "fp16":
        return "fp16"
    if precision == "int8" and device_family(device) != "CPU" and peaks.tflops_fp16 and qdq_fused(backend, device):
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
    precision, backend = row.get("precision", "fp32"), row.get("backend", "")
    fused = qdq_fused(backend, device)
    floats = float_precision(precision, device, peaks, backend)
    # An int8 row on a device that publishes only an int8 peak (intel-npu): its few float ops (LayerNorm,
    # Softmax, GELU; a small share of a ViT's FLOPs) do a handful of FLOPs per byte, memory-bound on any device, so
    # they are timed by their bytes rather than leaving the whole row unestimated for want of a float peak.
    # Not where the matmuls themselves run in float (unfused QDQ): those are compute-bound.
    memory_bound = fused and precision == "int8" and peaks.compute(floats) is None and bool(peaks.tops_int8 and peaks.bandwidth_gbs)
    costs = op_costs(path, batch or row.get("batch") or 1, floats, int8_ops, qdq_fused=fused)
    ms, detail = roofline_ms(costs, peaks, float_memory_bound=memory_bound)
    unfused = not fused and any(c.op_type in QDQ_OPS for c in costs)  # a QDQ graph ORT's CUDA provider runs as written
    return ms, {**summarize(costs), **detail, "graph": path.name, "float_precision": floats, **({"qdq_fused": False} if unfused else {})}


def no_estimate_note(detail: dict, target: str) -> str:
    """Why a row stays pending, as a sentence for the report."""
    missing = detail.get("missing_peak")
    lacks = [] if missing is None else [(f"{missing} peak", "peak_tops_int8" if missing == "int8" else f"peak_tflops_{missing}")]
    if detail.get("missing_bandwidth"):
        lacks.append(("memory bandwidth", "bandwidth_gbs"))
    reasons = [f"the target profile {target} gives no {' and no '.join(w for w, _ in lacks)} "
               f"(set {' and '.join(f for _, f in lacks)} in it to estimate this row)"] if lacks else []
    if detail.get("unknown_shapes"):
        reasons.append(f"{detail['unknown_shapes']} ops with unknown shapes in the ONNX graph (neither shape inference nor "
                       "an ONNX Runtime run of it resolved them; costed at 0 they would make the estimate too fast)")
    return f"no estimate: {'; '.join(reasons)}" if reasons else "no estimate: there is no ONNX graph of this artifact to cost"


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
        row["notes"] = f"{row.get('notes', '')}; {no_estimate_note(detail, target)}".lstrip("; ")
        return False
    eff, source = choose(samples, target, row.get("backend", ""), row.get("precision", ""), device)
    p50 = ms / eff
    batch = row.get("batch") or 1
    row.update(status="estimated", threads=None,
               latency_ms={"p50": sig(p50), "p90": None, "p99": None, "mean": sig(p50), "std": None, "min": None, "max": None},
               throughput_ips=sig(batch * 1000.0 / p50),
               estimate={**detail, "efficiency": sig(eff), "efficiency_source": source, "peaks": peaks.as_dict()})
    est_note = (f"roofline estimate: {_compute_note(detail, peaks)}, {detail['mb_moved']:.3g} MB at {peaks.bandwidth_gbs} GB/s, "
                f"{eff:.0%} efficiency ({source})")
    row["notes"] = f"{est_note}; {row['notes']}" if row.get("notes") else est_note
    return True


def _compute_note(detail: dict, peaks: Peaks) -> str:
    """'0.0272 GFLOP fp16 at 121 TFLOPS + 0.554 GOP int8 at 242.5 TOPS': the work and the peak it was timed at."""
    floats, peak = detail["float_precision"], peaks.compute(detail["float_precision"])
    if peak is None:  # estimated all the same: the float ops were timed as memory-bound (roofline_for)
        text = f"{detail['gflop_float']:.3g} GFLOP float timed by its bytes alone (no float peak in the profile)"
    else:
        text = f"{detail['gflop_float']:.3g} GFLOP {floats} at {peak / 1e12:g} TFLOPS"
    if detail["gop_int8"]:
        text += f" + {detail['gop_int8']:.3g} GOP int8 at {peaks.compute('int8') / 1e12:g} TOPS"
    if detail.get("qdq_fused") is False:
        text += " (ONNX Runtime's CUDA provider runs Q/DQ as ops of their own and the matmuls in fp32)"
    return text


def predict_measured(rows: list[dict], samples: list, target: str) -> None:
    """With efficiency from other runs (bench.efficiency_from), record what the estimator would have
    said for each measured row and how far off it was: `estimate: {p50_ms, error_pct, ...}`."""
    for row in rows:
        roof, p50 = row.get("roofline_ms"), (row.get("latency_ms") or {}).get("p50")
        if row.get("status") != "measured" or not roof or not p50 or not samples:
            continue
        eff, source = choose(samples, target, row.get("backend", ""), row.get("precision", ""), row.get("device") or "")
        est = roof / eff
        row["estimate"] = {"p50_ms": sig(est), "error_pct": round((est - p50) / p50 * 100.0, 2), "efficiency": sig(eff), "efficiency_source": source}
