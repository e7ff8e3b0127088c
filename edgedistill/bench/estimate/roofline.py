"""Roofline time of a graph on a device: per op, max(compute time, memory time), summed.

Summing per op (not whole-graph FLOPs / peak) keeps the memory-bound ops (LayerNorm, Softmax,
GELU, adds) from hiding behind the matmuls' compute.
"""

from __future__ import annotations

from .graph_cost import OpCost
from .peaks import Peaks


def roofline_ms(costs: list[OpCost], peaks: Peaks, float_memory_bound: bool = False) -> tuple[float | None, dict]:
    """(milliseconds, breakdown); None when the device has no compute peak for a precision used, or no
    bandwidth (timed by compute alone, a ViT came out many times too fast), or some ops' shapes are unknown
    (graph_cost.op_costs): the breakdown names what is missing.
    `float_memory_bound` times float ops with no peak by their bytes alone (see apply.roofline_for)."""
    missing = {} if peaks.bandwidth_gbs else {"missing_bandwidth": True}
    unknown = sum(c.unknown for c in costs)
    if unknown:  # costed at 0, a Swin lost most of its FLOPs: no figure beats a wrong one
        missing["unknown_shapes"] = unknown
    lacking = next((c.precision for c in costs if peaks.compute(c.precision) is None and not (float_memory_bound and c.precision != "int8")), None)
    if lacking is not None:
        missing["missing_peak"] = lacking
    if missing:
        return None, missing
    total = compute_bound = 0.0
    unpriced = 0
    for cost in costs:
        peak = peaks.compute(cost.precision)
        unpriced += peak is None
        t_compute = cost.flops / peak if peak is not None else 0.0
        t_memory = cost.bytes / (peaks.bandwidth_gbs * 1e9)
        total += max(t_compute, t_memory)
        compute_bound += t_compute if t_compute >= t_memory else 0.0
    ms = total * 1e3
    detail = {"roofline_ms": float(f"{ms:.6g}"), "compute_bound_share": round(compute_bound / total, 3) if total else None}
    if unpriced:
        detail["float_ops_memory_bound"] = unpriced  # ops timed by bytes / bandwidth only: no float peak
    return ms, detail
