"""torchrun setup, DDP, reductions and barriers (FSDP2 lives in fsdp.py).

Launch with `torchrun --nproc_per_node N -m edgedistill ...` (or any script calling the distill
stage): RANK/WORLD_SIZE/LOCAL_RANK come from the environment; NCCL on CUDA, gloo on the CPU.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from ..errors import EdgedistillError


@dataclass(frozen=True)
class DistContext:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    owns_group: bool = False  # this process group was created by init(), so shutdown() may destroy it

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1


# How gloo and NCCL word a collective whose other side is gone (the OOM killer, a lost node, a SIGKILL)
PEER_GONE = ("Connection reset by peer", "Connection closed by peer", "Broken pipe", "NCCL communicator was aborted",
             "remote process exited", "Socket Timeout")


class PeerStopped(EdgedistillError):
    """Another process of the torchrun job stopped: the job's environment, not a mistake, nor a bug."""

    exit_code = 1


def peer_stopped(exc: BaseException, ctx: DistContext) -> PeerStopped | None:
    """The one-line error for a collective that failed because another rank is gone, else None."""
    if not ctx.active or not isinstance(exc, RuntimeError):
        return None
    text = str(exc)
    if not (isinstance(exc, getattr(dist, "DistBackendError", ())) or any(words in text for words in PEER_GONE)):
        return None
    first = " ".join(text.split())[:160]
    return PeerStopped(f"another process of this {ctx.world}-process torchrun job stopped, so rank {ctx.rank} cannot go on ({first})",
                       "see the other ranks' logs for why (the OOM killer, a lost node), then relaunch the same torchrun command: "
                       "it resumes from the last checkpoint")


def init(device_kind: str) -> DistContext:
    """Join the process group when launched by torchrun; a single process otherwise."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistContext()
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    owns = not dist.is_initialized()
    if owns:
        backend = "nccl" if device_kind == "cuda" else "gloo"
        if device_kind == "cuda":
            torch.cuda.set_device(local_rank)
        dist.init_process_group(backend=backend)
    return DistContext(rank, world, local_rank, owns)


def shutdown(ctx: DistContext) -> None:
    """Destroy the group init() created (torch warns at exit otherwise); a caller's own group stays."""
    if ctx.owns_group and dist.is_initialized():
        dist.barrier()
        abandon(ctx)


def abandon(ctx: DistContext) -> None:
    """Destroy the group init() created after a failure, with no barrier: the other ranks may be gone."""
    if ctx.owns_group and dist.is_initialized():
        dist.destroy_process_group()


def wrap(module: nn.Module, ctx: DistContext, device: torch.device, find_unused: bool, strategy: str = "ddp") -> nn.Module:
    """DDP around the trainable module, or FSDP2 shards of it in place (strategy=fsdp)."""
    if not ctx.active:
        return module
    if strategy == "fsdp":
        from .fsdp import shard

        return shard(module, device)
    ids = [device.index if device.index is not None else ctx.local_rank] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(module, device_ids=ids, find_unused_parameters=find_unused)


def sum_tensors_(tensors: list[torch.Tensor], ctx: DistContext) -> None:
    """Each tensor summed over all ranks, in place (statistics that every rank's data feeds), in one
    all_reduce of their concatenation: one collective per call, not one per tensor."""
    if ctx.active:
        flat = torch.cat([t.reshape(-1).to(torch.float64) for t in tensors])
        dist.all_reduce(flat, op=dist.ReduceOp.SUM)
        for t, part in zip(tensors, flat.split([t.numel() for t in tensors])):
            t.copy_(part.view_as(t))


def from_main_(tensors: list[torch.Tensor], ctx: DistContext) -> None:
    """Rank 0's values everywhere, in place."""
    if ctx.active:
        for t in tensors:
            dist.broadcast(t, src=0)


def barrier(ctx: DistContext, group=None) -> None:
    if ctx.active:
        dist.barrier(group=group)


def patient_group(ctx: DistContext, hours: float = 24.0):
    """A CPU (gloo) group whose barrier waits up to `hours`, for ranks that wait while rank 0 works alone for
    longer than NCCL's watchdog allows a pending collective (10 minutes), e.g. fine-tuning on labels. Made on
    every rank while they are in step; None for a single process."""
    if not ctx.active:
        return None
    import datetime

    return dist.new_group(backend="gloo", timeout=datetime.timedelta(hours=hours))


def gather_objects(obj, ctx: DistContext) -> list:
    """Every rank's `obj` (a picklable value), in rank order."""
    if not ctx.active:
        return [obj]
    out = [None] * ctx.world
    dist.all_gather_object(out, obj)
    return out
