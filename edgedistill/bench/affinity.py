"""CPU pinning for the timed loop: every thread of this process is moved to the chosen CPUs, then restored.

`os.sched_setaffinity(0, ...)` would move only the calling thread; runtimes create their thread
pools when a session is built, so each existing thread (/proc/self/task) is pinned on its own.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path

from ..errors import EdgedistillError



def require_usable(cpus: set[int]) -> set[int]:
    """`cpus`, once it is known that this process may run on all of them (checked before any timing,
    so a wrong pin fails the bench stage instead of every artifact one by one)."""
    usable = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    if cpus and usable is not None and not cpus <= usable:
        raise EdgedistillError(f"bench.pin_cpus names CPUs {sorted(cpus - usable)} this process cannot run on",
                               f"pin to CPUs among {sorted(usable)}")
    return cpus


def _thread_ids() -> list[int]:
    task = Path("/proc/self/task")
    return [int(p.name) for p in task.iterdir()] if task.is_dir() else [0]


@contextmanager
def pinned(cpus: set[int] | None):
    """Pin all threads of the process to `cpus` inside the block; a falsy `cpus` does nothing."""
    if not cpus:
        yield None
        return
    if not hasattr(os, "sched_setaffinity"):
        raise EdgedistillError("CPU pinning needs Linux (os.sched_setaffinity)", "leave bench.pin_cpus empty on this OS")
    allowed = os.sched_getaffinity(0)
    if not set(cpus) <= allowed:
        raise EdgedistillError(f"bench.pin_cpus {sorted(cpus)} is not within this process's CPUs {sorted(allowed)}",
                               f"choose CPU ids from {sorted(allowed)}")
    saved: dict[int, set[int]] = {}
    try:
        for tid in _thread_ids():
            try:
                saved[tid] = os.sched_getaffinity(tid)
                os.sched_setaffinity(tid, cpus)
            except (ProcessLookupError, PermissionError):
                continue  # a thread that ended meanwhile, or one we may not move
        yield set(cpus)
    finally:
        for tid, mask in saved.items():
            try:
                os.sched_setaffinity(tid, mask)
            except (ProcessLookupError, PermissionError):
                continue
