"""Load local weights (.safetensors or torch files) into a timm model with a clear error on mismatch."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ..errors import EdgedistillError


def load_weights(model: nn.Module, path: str | Path) -> None:
    path = Path(path).expanduser()  # '~/w.safetensors' from a --set or a YAML file, which no shell expanded
    if path.is_dir():
        raise EdgedistillError(f"checkpoint '{path}' is a folder", "pass the .safetensors or .pth file inside it")
    if not path.is_file():
        raise EdgedistillError(f"checkpoint '{path}' does not exist", "pass an existing .safetensors or .pth file")
    state = _read_state(path)
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise EdgedistillError(f"checkpoint '{path}' holds no state dict of tensors", "save the weights with torch.save(model.state_dict(), PATH) or safetensors")
    state = _as_timm_loads_it(model, state)
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise EdgedistillError(f"checkpoint '{path}' does not fit the model: {_first_problem(exc)}", _fix_for(model, state)) from exc


def _as_timm_loads_it(model: nn.Module, state: dict) -> dict:
    """The state dict as timm's own pretrained loading would see it: training-script prefixes removed
    (module. from DDP, _orig_mod. from torch.compile, model. from Lightning) and the family's
    checkpoint_filter_fn applied, which resamples pos_embed to the model's img_size and converts
    original layouts (Meta's DINOv2 files, for one)."""
    import inspect
    import sys

    from timm.models import clean_state_dict

    state = clean_state_dict(state)
    if state and all(k.startswith("model.") for k in state):
        state = {k[len("model."):]: v for k, v in state.items()}
    convert = getattr(sys.modules.get(type(model).__module__), "checkpoint_filter_fn", None)
    if convert is not None:
        # timm registers DeiT-III with the ViT converter plus adapt_layer_scale (its original files name
        # layer scales gamma_1/gamma_2); no other ViT layout has gamma_ keys, so it is safe for all
        options = {"adapt_layer_scale": True} if "adapt_layer_scale" in inspect.signature(convert).parameters else {}
        try:
            state = convert(state, model, **options)
        except Exception:  # a layout the converter does not know: load_state_dict names what does not fit
            pass
    return state


def _first_problem(exc: RuntimeError) -> str:
    lines = str(exc).splitlines()
    return (lines[1].strip() if len(lines) > 1 else str(exc))[:160]


def _fix_for(model: nn.Module, state: dict) -> str:
    head = getattr(model, "get_classifier", lambda: None)()
    head_keys = {f"{name}.{k}" for name, module in model.named_modules() if module is head and name for k in module.state_dict()}
    missing = set(model.state_dict()) - set(state)
    if head_keys and missing and missing <= head_keys:  # a backbone-only file
        return "the checkpoint has no classifier head: set model_args={num_classes: 0} for this model"
    own = model.state_dict()
    resized = [k for k in head_keys if k in state and state[k].ndim == 2 and state[k].shape != own[k].shape]
    if resized:  # a head fine-tuned on other labels
        return f"the checkpoint's classifier has {state[resized[0]].shape[0]} classes: set model_args={{num_classes: {state[resized[0]].shape[0]}}}"
    return "check the model name (and model_args) match the checkpoint"


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
    for wrapper in ("state_dict", "model", "model_state_dict"):  # training scripts' checkpoint dicts
        if isinstance(state, dict) and isinstance(state.get(wrapper), dict):
            return state[wrapper]
    return state
