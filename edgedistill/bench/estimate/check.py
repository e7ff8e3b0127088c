"""How well the estimator predicts this CPU: learn the efficiency on one model, predict others.

Models are timed in interleaved rounds (A, B, C, A, B, C, ...) and each keeps the median of its
per-round p50s, so a burst of load from other processes hits all models alike instead of
skewing the one that happened to run during it.
"""

from __future__ import annotations

import statistics
from pathlib import Path

import numpy as np

from ...backends import get_backend
from ...errors import EdgedistillError
from ..latency import measure_latency
from .graph_cost import op_costs, sig, summarize
from .peaks import Peaks
from .roofline import roofline_ms


def _feeds(path: Path, batch: int) -> dict[str, np.ndarray]:
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    value = graph.input[0]
    dims = [d.dim_value if d.HasField("dim_value") else batch for d in value.type.tensor_type.shape.dim]
    return {value.name: np.random.default_rng(0).standard_normal(dims).astype(np.float32)}


def measured_p50s(paths: list[Path], threads: int | None, warmup: int = 5, iterations: int = 20, rounds: int = 3, batch: int = 1) -> list[float]:
    """Median over rounds of each model's p50 (ms) under ONNX Runtime on the CPU."""
    runners = [get_backend("onnxruntime").runner(p, threads=threads) for p in paths]
    per_model: list[list[float]] = [[] for _ in paths]
    for runner in runners:
        runner.activate()
    try:
        for _ in range(rounds):
            for i, (path, runner) in enumerate(zip(paths, runners)):
                per_model[i].append(measure_latency(runner, _feeds(path, batch), warmup, iterations).p50)
    finally:
        for runner in runners:
            runner.deactivate()
    return [statistics.median(v) for v in per_model]


def cross_check(calibrate: Path, others: list[Path], peaks: Peaks, threads: int | None, **timing) -> dict:
    """Learn efficiency on `calibrate`, predict `others`; errors in percent of the measured p50."""
    paths = [calibrate, *others]
    measured = measured_p50s(paths, threads, **timing)
    roofs = []
    details = []
    for path in paths:
        costs = op_costs(path, batch=timing.get("batch", 1))
        ms, detail = roofline_ms(costs, peaks)
        if ms is None:
            raise EdgedistillError(f"cannot cost {Path(path).name} on these peaks: {detail}", "check it with a model whose ONNX graph has static shapes")
        roofs.append(ms)
        details.append({**summarize(costs), **detail})
    efficiency = roofs[0] / measured[0]
    rows = []
    for path, roof, meas, detail in zip(paths, roofs, measured, details):
        est = roof / efficiency
        rows.append({"model": Path(path).stem, "gflop": detail["gflop_float"], "mb_moved": detail["mb_moved"], "roofline_ms": sig(roof),
                     "measured_p50_ms": sig(meas), "estimated_p50_ms": sig(est), "error_pct": round((est - meas) / meas * 100.0, 1)})
    return {"efficiency": sig(efficiency), "calibrated_on": Path(calibrate).stem, "peaks": peaks.as_dict(), "threads": threads, "rows": rows}
