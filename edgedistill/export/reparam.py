"""Re-parameterisation before export: RepVGG-style branches (repvit, fastvit, mobileone) and
conv+BN pairs are fused into single convolutions, as timm does for inference.

The training-time graph has several parallel convs per block; exporting it unfused gives a
slower ONNX with the same function. Parity is still checked against the unfused torch model.
"""

from __future__ import annotations

from torch import nn

HOOKS = ("fuse", "reparameterize", "switch_to_deploy")


def reparameterizable(model: nn.Module) -> list[str]:
    """Names of the modules timm's reparameterize_model would fuse."""
    return [name for name, module in model.named_modules() if name and any(hasattr(module, h) for h in HOOKS)]


def reparameterize(model: nn.Module) -> tuple[nn.Module, list[str]]:
    """(a fused copy, names of the fused modules); the model itself when there is nothing to fuse."""
    names = reparameterizable(model)
    if not names:
        return model, []
    from timm.utils import reparameterize_model

    return reparameterize_model(model, inplace=False).eval(), names
