"""Optional standardisation of teacher targets: running per-channel statistics, or PHI-S (phi_s.py).

Teachers differ wildly in feature scale (DINOv2 norms vs CLIP norms), so with several teachers
one loss would dominate; standardised targets give every channel unit variance (AM-RADIO).
The statistics are buffers, so they are checkpointed and, under DDP, broadcast from rank 0.
At save time `fold_into_head` moves the de-standardisation into the head's Linear, so the
deployed embedding lives in the teacher's own space.
"""

from __future__ import annotations

import torch
from torch import nn

from .phi_s import PhiSNorm


class TargetNorm(nn.Module):
    def __init__(self, dim: int, momentum: float = 0.01, eps: float = 1e-6):
        super().__init__()
        self.momentum, self.eps = momentum, eps
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("var", torch.ones(dim))
        self.register_buffer("count", torch.zeros((), dtype=torch.long))

    @torch.no_grad()
    def update(self, x: torch.Tensor) -> None:
        """Fold a batch [..., D] in: a cumulative average first, an EMA once 1/momentum batches are in."""
        flat = x.detach().float().reshape(-1, x.shape[-1])
        rate = max(self.momentum, 1.0 / float(self.count + 1))
        self.mean.lerp_(flat.mean(0), rate)
        self.var.lerp_(flat.var(0, unbiased=False), rate)
        self.count += 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean.to(x.dtype)) / (self.var + self.eps).sqrt().to(x.dtype)

    @torch.no_grad()
    def fold_into_head(self, head: nn.Sequential) -> None:
        """head(x)*std + mean as one Linear: W' = diag(std) W, b' = std*b + mean."""
        std = (self.var + self.eps).sqrt()
        linear = head[-1]
        linear.weight.mul_(std.unsqueeze(1))
        linear.bias.mul_(std).add_(self.mean)


class TeacherNorms(nn.Module):
    """One norm for the summary token and one for the patch tokens of a teacher.

    kind "running" is the per-channel TargetNorm above; "phi-s" the PCA-Hadamard PhiSNorm.
    """

    def __init__(self, token_dim: int, patch_dim: int, kind: str = "running", estimate_batches: int = 32):
        super().__init__()
        if kind == "phi-s":
            self.token, self.patch = PhiSNorm(token_dim, estimate_batches), PhiSNorm(patch_dim, estimate_batches)
        else:
            self.token, self.patch = TargetNorm(token_dim), TargetNorm(patch_dim)
