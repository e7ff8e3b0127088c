"""Distillation losses: MSE (Proteus default) or cosine + smooth-L1, and the three Proteus levels.

Masked levels weight per-token losses instead of indexing with a boolean mask, which would
force a GPU->CPU sync every step; the value is the same (each token has the same width).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

KINDS = ("mse", "cosine_smoothl1")


def token_losses(pred: torch.Tensor, target: torch.Tensor, kind: str = "mse") -> tuple[torch.Tensor, torch.Tensor | None]:
    """Per-vector loss [...] (mean over the last dim) and, for cosine_smoothl1, the per-vector 1-cos."""
    pred, target = pred.float(), target.float()
    if kind == "mse":
        return (pred - target).pow(2).mean(-1), None
    if kind == "cosine_smoothl1":
        return F.smooth_l1_loss(pred, target, reduction="none").mean(-1), 1.0 - F.cosine_similarity(pred, target, dim=-1)
    raise ValueError(f"unknown loss '{kind}' (use {' or '.join(KINDS)})")


def softmax_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """KL(softmax(teacher) ‖ softmax(student)) along `dim`, one value per slice, in float32 (DIME-FM, task outputs)."""
    log_q, log_p = F.log_softmax(student_logits.float(), dim), F.log_softmax(teacher_logits.float(), dim)
    return (log_p.exp() * (log_p - log_q)).sum(dim)


def weighted_loss(pred: torch.Tensor, target: torch.Tensor, weights: torch.Tensor, kind: str = "mse") -> torch.Tensor:
    """The loss over the vectors whose weight is 1 (weights broadcast to pred.shape[:-1]); 0 when none."""
    weights = weights.float().expand(pred.shape[:-1])
    count = weights.sum().clamp(min=1.0)
    elementwise, cosine = token_losses(pred, target, kind)
    loss = (elementwise * weights).sum() / count
    return loss if cosine is None else loss + (cosine * weights).sum() / count


def regression_loss(pred: torch.Tensor, target: torch.Tensor, kind: str = "mse") -> torch.Tensor:
    """Mean loss over all elements (mse) or over vectors (cosine part of cosine_smoothl1)."""
    return weighted_loss(pred, target, torch.ones(pred.shape[:-1], device=pred.device), kind)


@dataclass
class LevelLosses:
    token: torch.Tensor
    patch: torch.Tensor
    feature: torch.Tensor

    def total(self, weights: tuple[float, float, float]) -> torch.Tensor:
        return weights[0] * self.token + weights[1] * self.patch + weights[2] * self.feature

    def as_floats(self) -> dict[str, float]:
        return {"token": self.token.item(), "patch": self.patch.item(), "feature": self.feature.item()}

    def as_tensors(self) -> dict[str, torch.Tensor]:
        """Detached parts, read with .item() only when logged (no sync per step on the GPU)."""
        return {"token": self.token.detach(), "patch": self.patch.detach(), "feature": self.feature.detach()}


# Eager even inside a compiled student step: Triton 3.6 (torch 2.11) crashed compiling Inductor's fused
# weighted-loss reduction at the ViT-S/16 + ViT-L/14 batch-256 shapes ("PassManager::run failed" in
# make_ttgir, on an H100; tiny shapes compile). The losses are a few memory-bound passes, so the graph
# break costs little next to the backbone and heads, which stay compiled.
@torch.compiler.disable
def proteus_losses(
    token_pred: torch.Tensor,  # [B, D] student summary (clean pass) through the token head
    token_target: torch.Tensor,  # [B, D]
    patch_pred: torch.Tensor | None,  # [M, N, D'] masked pass of the first M samples through the patch head
    patch_target: torch.Tensor,  # [M, N, D'] the teacher's clean patches of those samples, on the student grid
    mask: torch.Tensor,  # [M, N] bool, True where the student saw the mask token
    feature_pred: torch.Tensor,  # [B, (1+)N, D'] student full map (clean pass)
    feature_target: torch.Tensor,  # [B, (1+)N, D']
    kind: str = "mse",
) -> LevelLosses:
    """Token and feature losses on every (clean) sample; patch loss at the masked positions only."""
    token = regression_loss(token_pred, token_target, kind)
    patch = weighted_loss(patch_pred, patch_target, mask, kind) if patch_pred is not None else token.new_zeros(())
    feature = regression_loss(feature_pred, feature_target, kind)
    return LevelLosses(token, patch, feature)
