"""Latency harness: warm-up (excluded), then a fixed count or a time budget of timed inferences."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import numpy as np

from ..backends.base import Runner


@dataclass
class LatencyStats:
    p50: float
    p90: float
    p99: float
    mean: float
    std: float
    min: float
    max: float
    iterations: int
    warmup: int

    def as_dict(self) -> dict:
        return asdict(self)


def summarize(samples_ms: list[float], warmup: int) -> LatencyStats:
    arr = np.asarray(samples_ms, dtype=np.float64)
    p50, p90, p99 = np.percentile(arr, [50, 90, 99])
    return LatencyStats(float(p50), float(p90), float(p99), float(arr.mean()), float(arr.std()), float(arr.min()), float(arr.max()), len(arr), warmup)


def measure_latency(runner: Runner, feeds: dict[str, np.ndarray], warmup: int = 10, iterations: int = 100, time_budget_s: float | None = None) -> LatencyStats:
    """Time `runner.infer(feeds)`; only calls after the warm-up are recorded.

    With `time_budget_s`, timing stops when the budget is spent (at least 5 runs) or at
    `iterations`, whichever comes first.
    """
    for _ in range(warmup):
        runner.infer(feeds)
    samples = []
    started = time.perf_counter()
    while len(samples) < iterations:
        runner.infer(feeds)
        samples.append(runner.last_inference_time() * 1000.0)
        if time_budget_s is not None and len(samples) >= 5 and time.perf_counter() - started >= time_budget_s:
            break
    return summarize(samples, warmup)
