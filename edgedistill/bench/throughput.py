"""Throughput at several batch sizes (models exported with a dynamic batch axis).

Each entry says how it was measured (`mode`): "async" where the runner offers a throughput queue
(OpenVINO: PERFORMANCE_HINT=THROUGHPUT, OPTIMAL_NUMBER_OF_INFER_REQUESTS requests in flight, as
benchmark_app -hint throughput), images done / wall time; "sync" elsewhere (ONNX Runtime, TensorRT):
batch x 1000 / the mean latency of one synchronous request at a time.
"""

from __future__ import annotations

import time

import numpy as np

from ..backends.base import Runner
from ..list_settings import parse_batch_sizes
from .affinity import pinned
from .latency import LatencyStats, measure_latency, stopped_by

# Under a time budget, at least this many requests (and one per infer request), as the sync loop's 5 samples.
MIN_BUDGET_REQUESTS = 5


def batch_of(inputs: np.ndarray, batch: int) -> np.ndarray:
    """`batch` evaluation inputs, repeating them when there are fewer (real images, not noise)."""
    reps = -(-batch // len(inputs))
    return np.ascontiguousarray(np.concatenate([inputs] * reps)[:batch])


def batch_sizes(requested: tuple, main: int, batch_opt: int, batch_max: int) -> list[int]:
    """(1, 4), ("1,4,8",) or () -> sorted sizes; () means the main batch plus the target's opt and max."""
    return sorted(set(parse_batch_sizes(requested) or [main, batch_opt, batch_max]))


def _why(exc: Exception) -> str:
    return f"{type(exc).__name__}: {str(exc).splitlines()[0][:160] if str(exc) else ''}"


def _failed(batch: int, exc: Exception) -> dict:
    return {"batch": batch, "status": "failed", "latency_ms": None, "throughput_ips": None, "notes": _why(exc)}


def sync_entry(batch: int, stats: LatencyStats) -> dict:
    return {"batch": batch, "status": "measured", "mode": "sync", "latency_ms": stats.as_dict(),
            "throughput_ips": round(batch * 1000.0 / stats.mean, 2)}


def timed_async(queue, feeds: dict[str, np.ndarray], warmup: int = 10, iterations: int = 100,
                time_budget_s: float | None = None, cpus: set[int] | None = None) -> tuple[int, float, int]:
    """(requests timed, seconds, warm-up requests) of `queue` kept full, under the sync loop's rules: `iterations`
    requests, or fewer when `time_budget_s` is spent first. Warm-up runs every infer request at least once (none
    at warmup=0, as the sync loop)."""
    floor = max(MIN_BUDGET_REQUESTS, queue.nireq)
    warm = max(warmup, queue.nireq) if warmup else 0
    queue.fill(feeds)
    with pinned(cpus):
        for _ in range(warm):
            queue.start()
        queue.wait()
        done = 0
        started = time.perf_counter()
        while done < iterations:
            queue.start()
            done += 1
            if time_budget_s is not None and done >= floor and time.perf_counter() - started >= time_budget_s:
                break
        queue.wait()  # the requests still in flight count: they are in `done`
        seconds = time.perf_counter() - started
    return done, seconds, warm


def _async_entry(queue, inputs: np.ndarray, batch: int, input_name: str, iterations: int = 100,
                 time_budget_s: float | None = None, **timing) -> dict:
    done, seconds, warm = timed_async(queue, {input_name: batch_of(inputs, batch)}, iterations=iterations,
                                      time_budget_s=time_budget_s, **timing)
    return {"batch": batch, "status": "measured", **queue.settings(), "requests": done, "warmup": warm,
            "seconds": round(seconds, 6), "stopped_by": stopped_by(done, iterations, time_budget_s),
            "latency_ms": None, "throughput_ips": round(done * batch / seconds, 2)}


def sweep(runner: Runner, inputs: np.ndarray, sizes: list[int], input_name: str = "input",
          measured: dict[int, LatencyStats] | None = None, **timing) -> list[dict]:
    """One entry per batch size; a size the model rejects (static batch) is recorded as failed, not fatal.

    Asynchronous where the runner has `throughput_queue` (OpenVINO), else synchronous; `measured` holds
    sync latencies already taken (the main batch's), reused rather than timed again. An async size that
    fails where a sync figure exists keeps that figure, with the reason in its notes."""
    measured = measured or {}
    opener = getattr(runner, "throughput_queue", None)
    fallback = None
    if opener is not None:
        try:
            out = []
            with opener() as queue:
                for batch in sizes:
                    try:
                        out.append(_async_entry(queue, inputs, batch, input_name, **timing))
                    except Exception as exc:  # a static-batch model rejects other batch sizes
                        out.append(dict(sync_entry(batch, measured[batch]), notes=f"async throughput failed ({_why(exc)})")
                                   if batch in measured else _failed(batch, exc))
                        queue.renew()
            return out
        except Exception as exc:  # the THROUGHPUT compile itself failed: the sync figures, saying why
            fallback = f"async throughput failed ({_why(exc)})"
    out = []
    for batch in sizes:
        try:
            stats = measured[batch] if batch in measured else measure_latency(runner, {input_name: batch_of(inputs, batch)}, **timing)
        except Exception as exc:  # a static-batch model rejects other batch sizes
            out.append(_failed(batch, exc))
            continue
        out.append(sync_entry(batch, stats) | ({"notes": fallback} if fallback else {}))
    return out
