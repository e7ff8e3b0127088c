"""Settings written as lists or comma-separated text (bench.pin_cpus, bench.batch_sizes), parsed when
the config loads and again where they are used: shared ground, so config need not import bench."""

from __future__ import annotations

from .errors import EdgedistillError


def parse_cpus(spec) -> set[int]:
    """(0, 1), "0-3,6", [2] or "" -> a set of CPU ids."""
    if spec is None:
        return set()
    items = [spec] if isinstance(spec, (int, str)) else list(spec)
    cpus: set[int] = set()
    for item in items:
        for part in str(item).replace(" ", "").split(","):
            if not part:
                continue
            try:
                lo, _, hi = part.partition("-")
                first, last = int(lo), int(hi or lo)
            except ValueError:
                raise EdgedistillError(f"bench.pin_cpus has '{part}', not a CPU id or range", "write CPU ids such as [0, 1] or \"0-3\"") from None
            if last < first:  # an empty range pinned nothing, silently
                raise EdgedistillError(f"bench.pin_cpus has the range '{part}', which runs backwards", f"write it as {last}-{first}")
            cpus.update(range(first, last + 1))
    return cpus


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
