"""Copy the next batch to the GPU on a side stream while the current step computes.

With the teacher cache, a batch carries fp16 patch features (~0.5 MB per image for ViT-L/14),
so a copy on the compute stream would stall every step; this overlaps it (timm's PrefetchLoader idea).
"""

from __future__ import annotations

import torch


def _to(batch: dict, device: torch.device) -> dict:
    return {k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


def prefetch(batches, device: torch.device):
    """Yield the batches of `batches` with their tensors already on `device` (CUDA); pass-through otherwise."""
    if device.type != "cuda":
        yield from batches
        return
    stream = torch.cuda.Stream(device)
    pending = None
    for batch in batches:
        with torch.cuda.stream(stream):
            moved = _to(batch, device)
        if pending is not None:
            yield pending
        torch.cuda.current_stream(device).wait_stream(stream)
        for v in moved.values():
            if isinstance(v, torch.Tensor):
                v.record_stream(torch.cuda.current_stream(device))
        pending = moved
    if pending is not None:
        yield pending
