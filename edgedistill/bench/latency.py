"""Latency harness: warm-up (excluded), then a fixed count or a time budget of timed inferences."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import numpy as np

from ..backends.base import Runner
from .affinity import pinned


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
    # what ended timing: "time_budget" (bench.time_budget_s, before the iteration count) or "iterations"
    stopped_by: str | None = None

    def as_dict(self) -> dict:
        return asdict(self)


def summarize(samples_ms: list[float], warmup: int, stopped_by: str | None = None) -> LatencyStats:
    arr = np.asarray(samples_ms, dtype=np.float64)
    p50, p90, p99 = np.percentile(arr, [50, 90, 99])
    return LatencyStats(float(p50), float(p90), float(p99), float(arr.mean()), float(arr.std()), float(arr.min()), float(arr.max()),
                        len(arr), warmup, stopped_by)


def stopped_by(taken: int, iterations: int, time_budget_s: float | None) -> str:
    """What ended a timing loop that took `taken` samples or requests: the budget when it ended before the count."""
    return "time_budget" if time_budget_s is not None and taken < iterations else "iterations"


def timed_samples(runner: Runner, feeds: dict[str, np.ndarray], warmup: int = 10, iterations: int = 100,
                  time_budget_s: float | None = None, cpus: set[int] | None = None) -> list[float]:
    """Milliseconds of each timed `runner.infer(feeds)`; the warm-up calls are run but never recorded.

    Each sample is the runner's own clock around `_infer_impl` (Runner.infer), so the loop's
    bookkeeping is not in it. With `time_budget_s`, timing stops when the budget is spent (at
    least 5 runs) or at `iterations`, whichever comes first. With `cpus`, every thread of the
    process runs on those CPUs during warm-up and timing, and goes back afterwards.
    """
    samples: list[float] = []
    with pinned(cpus):
        for _ in range(warmup):
            runner.infer(feeds)
        started = time.perf_counter()
        while len(samples) < iterations:
            runner.infer(feeds)
            samples.append(runner.last_inference_time() * 1000.0)
            if time_budget_s is not None and len(samples) >= 5 and time.perf_counter() - started >= time_budget_s:
                break
    return samples


def measure_latency(runner: Runner, feeds: dict[str, np.ndarray], warmup: int = 10, iterations: int = 100,
                    time_budget_s: float | None = None, cpus: set[int] | None = None) -> LatencyStats:
    """Summary statistics of `timed_samples`, with what stopped timing (the report shows it beside the count)."""
    samples = timed_samples(runner, feeds, warmup, iterations, time_budget_s, cpus)
    return summarize(samples, warmup, stopped_by(len(samples), iterations, time_budget_s))
