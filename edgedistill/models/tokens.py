"""Student feature taps: the full token map (optionally with masked patches) and its patch grid."""

from __future__ import annotations

import re

import torch
from torch import nn

from ..errors import EdgedistillError


def infer_grid(model: nn.Module, n_patches: int) -> tuple[int, int]:
    grid = getattr(getattr(model, "patch_embed", None), "grid_size", None)
    if grid is not None and grid[0] * grid[1] == n_patches:
        return int(grid[0]), int(grid[1])
    side = int(round(n_patches**0.5))
    if side * side != n_patches:
        raise EdgedistillError(f"cannot infer a square token grid from {n_patches} patch tokens", "use a square input size")
    return side, side


def num_prefix_tokens(model: nn.Module) -> int:
    """Class/distillation/register tokens ahead of the patches. Families without timm's attribute are
    counted by their token parameters ([1, n, D]): VOLO's cls_token, PiT's (n=2 when distilled),
    CoaT's last stage's cls_token4."""
    count = getattr(model, "num_prefix_tokens", None)
    if count is not None:
        return int(count)
    stages = sorted(name for name, _ in model.named_parameters(recurse=False) if re.fullmatch(r"cls_token\d+", name))
    names = ("cls_token", "dist_token") + tuple(stages[-1:])
    return sum(int(getattr(model, name).shape[-2]) for name in names if getattr(model, name, None) is not None)


def is_maskable(backbone: nn.Module) -> bool:
    """True for timm VisionTransformers (registers, DeiT and dynamic sizes included), whose forward_features
    token_maps below retraces; look-alikes such as Eva build their position embedding differently."""
    from timm.models.vision_transformer import VisionTransformer

    return isinstance(backbone, VisionTransformer)


def token_maps(backbone: nn.Module, x: torch.Tensor, mask: torch.Tensor, mask_token: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The clean token map of every sample and the masked token map of the first M (`mask` is bool
    [M, N]), from one pass over B + M sequences: one patch embedding, and transformer matmuls 1.5×
    as tall instead of two smaller passes (a small student under-fills a large GPU).

    It retraces timm's VisionTransformer.forward_features step by step, inserting the mask token
    after patch embedding and before position embedding, as Proteus/iBOT do.
    """
    if not is_maskable(backbone):
        raise EdgedistillError(f"masked patch distillation needs a ViT-style student, got {type(backbone).__name__}", "set distill.patch_weight=0 for this student")
    embedded = backbone.patch_embed(x)
    m = mask.shape[0]
    if embedded.ndim == 4:  # dynamic_img_size ViTs keep NHWC here, and _pos_embed wants it so
        mask = mask.reshape(m, *embedded.shape[1:3])
    masked = torch.where(mask.unsqueeze(-1), mask_token.to(embedded.dtype), embedded[:m])
    tokens = backbone._pos_embed(torch.cat([embedded, masked]))
    tokens = backbone.patch_drop(tokens)
    tokens = backbone.norm_pre(tokens)
    tokens = backbone.norm(backbone.blocks(tokens))
    return tokens[: x.shape[0]], tokens[x.shape[0]:]


def map_tokens(model: nn.Module, features: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
    """A 4-D feature map as tokens [B, H*W, C] (row-major) and its grid. Most timm families return
    NCHW; Swin, MambaOut and other NHWC families say so in `output_fmt`."""
    if getattr(model, "output_fmt", "NCHW") == "NHWC":
        b, h, w, c = features.shape
        return features.reshape(b, h * w, c), (h, w)
    b, c, h, w = features.shape
    return features.flatten(2).transpose(1, 2), (h, w)


def patch_tokens(backbone: nn.Module, tokens: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
    """Spatial tokens [B, N, D] and their (H, W) grid from a token map or a CNN feature map."""
    name = type(backbone).__name__
    if not isinstance(tokens, torch.Tensor) or tokens.ndim not in (3, 4):  # e.g. CrossViT's list of branches
        raise EdgedistillError(f"{name}.forward_features returns no single token or feature map", "choose a model whose forward_features returns one (ViT, CNN, Swin, ...)")
    if tokens.ndim == 4:
        return map_tokens(backbone, tokens)
    patches = tokens[:, num_prefix_tokens(backbone):]
    if patches.shape[1] == 0:  # PiT returns its class token(s) only
        raise EdgedistillError(f"{name}.forward_features returns only its {tokens.shape[1]} class token(s), no patch tokens",
                               "choose a model with a spatial output (ViT, CNN, Swin, ...)")
    return patches, infer_grid(backbone, patches.shape[1])
