"""Load local weights (.safetensors or torch files) into a timm model with a clear error on mismatch."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ..errors import EdgedistillError


def load_weights(model: nn.Module, path: str | Path) -> None:
    path = Path(path)
    if not path.is_file():
        raise EdgedistillError(f"checkpoint '{path}' does not exist", "pass an existing .safetensors or .pth file")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(path))
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)
        state = state.get("state_dict", state.get("model", state)) if isinstance(state, dict) else state
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        first = str(exc).splitlines()[1].strip() if len(str(exc).splitlines()) > 1 else str(exc)
        raise EdgedistillError(f"checkpoint '{path}' does not fit the model: {first[:160]}", "check the model name matches the checkpoint") from exc
