"""Throughput at several batch sizes (models exported with a dynamic batch axis)."""

from __future__ import annotations

import numpy as np

from ..backends.base import Runner
from ..errors import EdgedistillError
from .latency import measure_latency


def batch_of(inputs: np.ndarray, batch: int) -> np.ndarray:
    """`batch` evaluation inputs, repeating them when there are fewer (real images, not noise)."""
    reps = -(-batch // len(inputs))
    return np.ascontiguousarray(np.concatenate([inputs] * reps)[:batch])


def parse_batch_sizes(requested: tuple) -> list[int]:
    """(1, 4) or ("1,4,8",) -> [1, 4, 8]; refused with a one-line error unless every size is an integer >= 1."""
    parts = [p for item in requested for p in str(item).replace(" ", "").split(",") if p]
    try:
        sizes = [int(p) for p in parts]
    except ValueError:
        raise EdgedistillError(f"bench.batch_sizes {list(requested)} holds a non-integer", "write sizes such as [1, 4, 8] or \"1,4,8\"") from None
    if any(size < 1 for size in sizes):  # dropped silently before: a sweep the user did not ask for
        raise EdgedistillError(f"bench.batch_sizes {list(requested)} holds a size below 1", "write sizes of 1 or more, such as [1, 4, 8]")
    return sizes


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
