"""Throughput at several batch sizes (models exported with a dynamic batch axis)."""

from __future__ import annotations

import numpy as np

from ..backends.base import Runner
from ..list_settings import parse_batch_sizes
from .latency import measure_latency


def batch_of(inputs: np.ndarray, batch: int) -> np.ndarray:
    """`batch` evaluation inputs, repeating them when there are fewer (real images, not noise)."""
    reps = -(-batch // len(inputs))
    return np.ascontiguousarray(np.concatenate([inputs] * reps)[:batch])


def batch_sizes(requested: tuple, main: int, batch_opt: int, batch_max: int) -> list[int]:
    """(1, 4), ("1,4,8",) or () -> sorted sizes; () means the main batch plus the target's opt and max."""
    return sorted(set(parse_batch_sizes(requested) or [main, batch_opt, batch_max]))


def sweep(runner: Runner, inputs: np.ndarray, sizes: list[int], input_name: str = "input", **timing) -> list[dict]:
    """One entry per batch size; a size the model rejects (static batch) is recorded as failed, not fatal."""
    out = []
    for batch in sizes:
        try:
            stats = measure_latency(runner, {input_name: batch_of(inputs, batch)}, **timing)
        except Exception as exc:  # a static-batch model rejects other batch sizes
            out.append({"batch": batch, "status": "failed", "latency_ms": None, "throughput_ips": None,
                        "notes": f"{type(exc).__name__}: {str(exc).splitlines()[0][:160] if str(exc) else ''}"})
            continue
        out.append({"batch": batch, "status": "measured", "latency_ms": stats.as_dict(),
                    "throughput_ips": round(batch * 1000.0 / stats.mean, 2)})
    return out
