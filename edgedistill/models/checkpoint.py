"""Load local weights (.safetensors or torch files) into a timm model with a clear error on mismatch."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ..errors import EdgedistillError


def load_weights(model: nn.Module, path: str | Path) -> None:
    path = Path(path)
    if path.is_dir():
        raise EdgedistillError(f"checkpoint '{path}' is a folder", "pass the .safetensors or .pth file inside it")
    if not path.is_file():
        raise EdgedistillError(f"checkpoint '{path}' does not exist", "pass an existing .safetensors or .pth file")
    state = _read_state(path)
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise EdgedistillError(f"checkpoint '{path}' holds no state dict of tensors", "save the weights with torch.save(model.state_dict(), PATH) or safetensors")
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        first = str(exc).splitlines()[1].strip() if len(str(exc).splitlines()) > 1 else str(exc)
        raise EdgedistillError(f"checkpoint '{path}' does not fit the model: {first[:160]}", "check the model name matches the checkpoint") from exc


def _read_state(path: Path):
    """The file's tensors, a one-line error for a file that is no checkpoint (truncated, another format,
    or a whole pickled model, which weights_only loading refuses for safety)."""
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # safetensors, pickle and zip each raise their own types
        cause = str(exc).strip().splitlines()[0][:120] if str(exc).strip() else type(exc).__name__
        raise EdgedistillError(f"cannot read checkpoint '{path}': {cause}",
                               "pass a .safetensors file or a .pth holding model.state_dict() (not a pickled model object)") from exc
    return state.get("state_dict", state.get("model", state)) if isinstance(state, dict) else state
