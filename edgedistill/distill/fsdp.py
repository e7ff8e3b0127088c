"""FSDP2 (`torch.distributed.fsdp.fully_shard`) for students too large to replicate on every GPU.

Each transformer block (or stage) of the student is sharded on its own, then the whole module,
so parameters, gradients and optimizer state are split across ranks and gathered one block at
a time. Checkpoints hold full (unsharded) state dicts, the same files DDP and one process write (the
optimizer's keyed by parameter name: full_state), so a sharded job and a replicated one can resume each
other's checkpoints. Launch exactly as for DDP, with distill.strategy=fsdp.
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


def full_state(module: nn.Module, optimizer: torch.optim.Optimizer, sharded: bool) -> tuple[dict, dict]:
    """Unsharded model and optimizer state dicts, rank 0's on the CPU (a collective: all ranks call it). The
    optimizer's is keyed by parameter name, not by position, for a sharded module and a replicated one alike."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict, get_state_dict

    options = StateDictOptions(full_state_dict=True, cpu_offload=True)
    if sharded:
        return get_state_dict(module, optimizer, options=options)
    return module.state_dict(), get_optimizer_state_dict(module, optimizer, options=options)


def load_full_state(module: nn.Module, optimizer: torch.optim.Optimizer, model_state: dict, optimizer_state: dict,
                    sharded: bool) -> None:
    """Load full state dicts (every rank read the same checkpoint file), into the shards when `sharded`."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict, set_optimizer_state_dict

    if sharded:
        set_model_state_dict(module, model_state, options=StateDictOptions(full_state_dict=True))
    else:
        module.load_state_dict(model_state)
    # not strict: a parameter no step has given a gradient yet (a head without a masked pass) has no optimizer state,
    # and keeps none (torch gives every parameter a zero state first, which would change its first update's bias correction)
    optimizer_state = by_name(module, optimizer, optimizer_state)
    set_optimizer_state_dict(module, optimizer, optimizer_state, options=StateDictOptions(full_state_dict=True, strict=False))
    for name, param in module.named_parameters():
        if name not in optimizer_state["state"]:
            optimizer.state.pop(param, None)


def by_name(module: nn.Module, optimizer: torch.optim.Optimizer, state: dict) -> dict:
    """`state` keyed by parameter name. Older checkpoints of DDP and single-process runs hold
    optimizer.state_dict(), keyed by position in the param groups: positions in the live optimizer's
    groups (the same module, the same groups), whose parameters the module names."""
    groups = state["param_groups"]
    if all(isinstance(p, str) for group in groups for p in group["params"]):
        return state
    names = {id(p): name for name, p in module.named_parameters()}
    name_of = {i: names[id(p)] for saved, live in zip(groups, optimizer.param_groups) for i, p in zip(saved["params"], live["params"])}
    return {"state": {name_of[i]: value for i, value in state["state"].items()},
            "param_groups": [{**group, "params": [name_of[i] for i in group["params"]]} for group in groups]}


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
