"""Distillation losses: MSE (Proteus default) or cosine + smooth-L1, and the three Proteus levels."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


def regression_loss(pred: torch.Tensor, target: torch.Tensor, kind: str = "mse") -> torch.Tensor:
    """Mean loss over all elements (mse) or over vectors (cosine part of cosine_smoothl1)."""
    pred, target = pred.float(), target.float()
    if kind == "mse":
        return F.mse_loss(pred, target)
    if kind == "cosine_smoothl1":
        cosine = 1.0 - F.cosine_similarity(pred, target, dim=-1).mean()
        return cosine + F.smooth_l1_loss(pred, target)
    raise ValueError(f"unknown loss '{kind}' (use mse or cosine_smoothl1)")


@dataclass
class LevelLosses:
    token: torch.Tensor
    patch: torch.Tensor
    feature: torch.Tensor

    def total(self, weights: tuple[float, float, float]) -> torch.Tensor:
        return weights[0] * self.token + weights[1] * self.patch + weights[2] * self.feature

    def as_floats(self) -> dict[str, float]:
        return {"token": self.token.item(), "patch": self.patch.item(), "feature": self.feature.item()}


def proteus_losses(
    token_pred: torch.Tensor,  # [B, D] student summary through the token head
    token_target: torch.Tensor,  # [B, D]
    patch_pred: torch.Tensor,  # [B, N, D'] student patches through the patch head
    patch_target: torch.Tensor,  # [B, N, D'] teacher patches on the student grid
    mask: torch.Tensor,  # [B, N] bool, True where the student saw the mask token
    feature_pred: torch.Tensor,  # [B, 1+N, D'] student full map through the feature head
    feature_target: torch.Tensor,  # [B, 1+N, D']
    clean: torch.Tensor,  # [B] bool, samples whose input was not masked
    kind: str = "mse",
) -> LevelLosses:
    """Token loss on every sample; patch loss at masked positions; feature loss on clean samples."""
    token = regression_loss(token_pred, token_target, kind)
    zero = token_pred.sum() * 0.0  # keeps the graph when a level has no samples this step
    patch = regression_loss(patch_pred[mask], patch_target[mask], kind) if mask.any() else zero
    feature = regression_loss(feature_pred[clean], feature_target[clean], kind) if clean.any() else zero
    return LevelLosses(token, patch, feature)
