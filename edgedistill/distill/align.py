"""Align the teacher's spatial tokens to the student's grid (patch sizes or strides differ)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def align_grid(patches: torch.Tensor, source_grid: tuple[int, int], target_grid: tuple[int, int]) -> torch.Tensor:
    """[B, Hs*Ws, D] on source_grid -> [B, Ht*Wt, D] on target_grid by bilinear interpolation."""
    if tuple(source_grid) == tuple(target_grid):
        return patches
    b, n, d = patches.shape
    hs, ws = source_grid
    spatial = patches.transpose(1, 2).reshape(b, d, hs, ws)
    resized = F.interpolate(spatial.float(), size=tuple(target_grid), mode="bilinear", align_corners=False, antialias=True)
    return resized.flatten(2).transpose(1, 2).to(patches.dtype)
