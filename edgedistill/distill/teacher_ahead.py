"""Run the online teachers one batch ahead, on a side CUDA stream, so their forward overlaps the student's step.

An online step is the frozen teacher's forward (most of the FLOPs, compute-bound) followed by the
narrow student's forward and backward (mostly memory-bound). Run in order on one stream, the
step's model FLOPs utilisation is a time-weighted mix of the two and cannot exceed the teacher's
own. Launched on another stream, the teacher's kernels for batch i+1 can use what the student's
kernels for batch i leave idle. The targets are the same numbers (the same kernels on another
stream), so a run with and without it trains the same weights; on the CPU it only reorders calls.
"""

from __future__ import annotations

import contextlib

import torch

from ..data.augment import unit_interval


def teacher_ahead(batches, targets, device: torch.device, autocast):
    """Yield each batch of `batches` with its teacher targets under "targets", computed while the
    previous batch's step runs. `targets` is an OnlineTargets; `autocast` the step's autocast."""
    side = torch.cuda.Stream(device) if device.type == "cuda" else None
    pending = None
    for batch in batches:
        launched = _launch(batch, targets, side, device, autocast)
        if pending is not None:
            yield _ready(*pending, side, device)
        pending = launched
    if pending is not None:
        yield _ready(*pending, side, device)


def _launch(batch: dict, targets, side, device, autocast) -> tuple:
    if side is not None:  # the batch's copy to the GPU (prefetch) is ordered on the current stream
        side.wait_stream(torch.cuda.current_stream(device))
    with torch.cuda.stream(side) if side is not None else contextlib.nullcontext(), torch.no_grad(), autocast:
        view = unit_interval(batch["view"])
        out = targets(batch, view)
    # the [0,1] view goes on to the student's step, whose unit_interval then passes it through
    return {**batch, "view": view, "uint8_view": batch["view"]}, out, side.record_event() if side is not None else None


def _ready(batch: dict, out: list, event, side, device) -> dict:
    uint8_view = batch.pop("uint8_view")
    if event is not None:
        current = torch.cuda.current_stream(device)
        current.wait_event(event)
        # the caching allocator must not hand these out again while the other stream still uses them
        uint8_view.record_stream(side)
        for t in (batch["view"], *(part for t in out for part in (t.token, t.patches))):
            t.record_stream(current)
    return {**batch, "targets": out}
