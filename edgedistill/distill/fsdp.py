"""FSDP2 (`torch.distributed.fsdp.fully_shard`) for students too large to replicate on every GPU.

Each transformer block (or stage) of the student is sharded on its own, then the whole module,
so parameters, gradients and optimizer state are split across ranks and gathered one block at
a time. Checkpoints hold full (unsharded) state dicts, the same files DDP writes, so a sharded job
and a replicated one can resume each other's checkpoints. Launch exactly as for DDP, with distill.strategy=fsdp.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn

from ..errors import EdgedistillError


def _shard_units(backbone: nn.Module) -> list[nn.Module]:
    """The repeated units of a timm model: ViT blocks, or the stages of hierarchical models."""
    for name in ("blocks", "stages", "layers"):
        units = getattr(backbone, name, None)
        if isinstance(units, (nn.Sequential, nn.ModuleList)) and len(units):
            return list(units)
    return []


def shard(module: nn.Module, device: torch.device) -> nn.Module:
    """Shard in place (block by block, then the root); returns the same, now sharded, module."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    mesh = init_device_mesh(device.type, (dist.get_world_size(),))
    for unit in _shard_units(module.backbone):
        fully_shard(unit, mesh=mesh)
    fully_shard(module, mesh=mesh)
    return module


def full_state(module: nn.Module, optimizer: torch.optim.Optimizer) -> tuple[dict, dict]:
    """Unsharded model and optimizer state dicts on every rank's CPU (a collective: all ranks call it)."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_state_dict

    return get_state_dict(module, optimizer, options=StateDictOptions(full_state_dict=True, cpu_offload=True))


def load_full_state(module: nn.Module, optimizer: torch.optim.Optimizer, model_state: dict, optimizer_state: dict) -> None:
    """Load full state dicts (every rank read the same checkpoint file) back into the shards."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_state_dict

    set_state_dict(module, optimizer, model_state_dict=model_state, optim_state_dict=optimizer_state,
                   options=StateDictOptions(full_state_dict=True))


def unsharded_copy(template: nn.Module, module: nn.Module) -> nn.Module:
    """`template` (an unsharded copy taken before sharding) loaded with the trained weights (a collective)."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    full = get_model_state_dict(module, options=StateDictOptions(full_state_dict=True, cpu_offload=False))
    template.load_state_dict({k: v.cpu() for k, v in full.items()})
    return template


def check_supported(ema_decay: float) -> None:
    if ema_decay > 0:
        raise EdgedistillError("distill.ema_decay > 0 is not supported with distill.strategy=fsdp",
                               "set distill.ema_decay=0, or use distill.strategy=ddp")
