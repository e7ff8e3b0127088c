"""Optional standardisation of teacher targets: running per-channel statistics, or PHI-S (phi_s.py).

Teachers differ wildly in feature scale (DINOv2 norms vs CLIP norms), so with several teachers
one loss would dominate; standardised targets give every channel unit variance (AM-RADIO).

The norms transform targets, not the student, so they live outside the trained module: DDP and
FSDP do not broadcast them and EMA does not average them. Each update sums its batch statistics
over all ranks, so every rank holds the same statistics of the whole global batch. They are
checkpointed beside the module. At save time `fold_into_head` moves the de-standardisation into
the head's Linear, so the deployed embedding lives in the teacher's own space.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from ..models.teacher import TeacherTargets
from .distributed import DistContext, sum_tensors_
from .phi_s import PhiSNorm


class TargetNorm(nn.Module):
    def __init__(self, dim: int, momentum: float = 0.01, eps: float = 1e-6):
        super().__init__()
        self.momentum, self.eps = momentum, eps
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("var", torch.ones(dim))
        self.register_buffer("count", torch.zeros((), dtype=torch.long))
        self._seen: int | None = None  # `count` mirrored on the host: reading the buffer each step would sync with the GPU

    def _load_from_state_dict(self, *args, **kwargs):
        super()._load_from_state_dict(*args, **kwargs)
        self._seen = None  # re-read once from the loaded buffer

    @torch.no_grad()
    def update(self, x: torch.Tensor, ctx: DistContext = DistContext()) -> None:
        """Fold the global batch [..., D] in: a cumulative average first, an EMA once 1/momentum batches are in."""
        moments = self.local_moments(x)
        sum_tensors_(moments, ctx)
        self.apply_moments(moments)

    @torch.no_grad()
    def local_moments(self, x: torch.Tensor) -> list[torch.Tensor]:
        """This rank's share as float64 sums (n·mean, n·E[x²], n), to be summed over ranks."""
        flat = x.detach().float().reshape(-1, x.shape[-1])
        var, mean = torch.var_mean(flat, 0, correction=0)  # two-pass on this rank's share, then exact pooling in float64
        n = float(flat.shape[0])
        return [mean.double() * n, (var.double() + mean.double().square()) * n, mean.new_tensor(n, dtype=torch.float64)]

    @torch.no_grad()
    def apply_moments(self, moments: list[torch.Tensor]) -> None:
        n = moments[2]
        pooled_mean = moments[0] / n
        pooled_var = (moments[1] / n - pooled_mean.square()).clamp_min(0)  # the spread around the batch's own mean
        if self._seen is None:
            self._seen = int(self.count)
        rate = max(self.momentum, 1.0 / (self._seen + 1))
        if self._seen == 0:  # the first batch alone: unbiased, as BatchNorm's running_var; one vector's spread is 0
            pooled_var = pooled_var * (n / (n - 1).clamp_min(1))
        # The running statistics and the batch's as a mixture (weights 1-rate, rate): its variance adds the spread
        # between their means, so small batches pool to the variance of every vector seen, and batches of one
        # vector (the summary token at distill.batch_size=1) still count; before, their variance never moved.
        # The first batch replaces the initial 1.0 whole (rate 1): kept, a placeholder outweighed small channels
        # for hundreds of steps. Targets are standardised after the update, so one vector's 0 divides no spread.
        delta = pooled_mean.float() - self.mean
        self.var.mul_(1 - rate).add_(rate * pooled_var.float() + rate * (1 - rate) * delta.square())
        self.mean.add_(rate * delta)
        self.count += 1
        self._seen += 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean.to(x.dtype)) / (self.var + self.eps).sqrt().to(x.dtype)

    def inverse(self, x: torch.Tensor) -> torch.Tensor:
        """A standardised prediction back in the teacher's space (differentiable: DIME-FM's loss reads it there)."""
        return x * (self.var + self.eps).sqrt().to(x.dtype) + self.mean.to(x.dtype)

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


class TargetStandardizer(nn.Module):
    """The norms of every teacher, applied to the targets before the loss (see the module docstring)."""

    def __init__(self, norms: list[TeacherNorms]):
        super().__init__()
        self.norms = nn.ModuleList(norms)

    @torch.no_grad()
    def update(self, targets: list[TeacherTargets], ctx: DistContext = DistContext()) -> None:
        pairs = [pair for norm, t in zip(self.norms, targets) for pair in ((norm.token, t.token), (norm.patch, t.patches))]
        running = [(norm, x) for norm, x in pairs if isinstance(norm, TargetNorm)]
        if running:  # every step, all run: one all_reduce for all of them, not one per norm
            moments = [norm.local_moments(x) for norm, x in running]
            sum_tensors_([m for per_norm in moments for m in per_norm], ctx)
            for (norm, _), per_norm in zip(running, moments):
                norm.apply_moments(per_norm)
        for norm, x in pairs:
            if not isinstance(norm, TargetNorm):  # PHI-S: only until its estimate freezes
                norm.update(x, ctx)

    @torch.no_grad()
    def forward(self, targets: list[TeacherTargets]) -> list[TeacherTargets]:
        return [dataclasses.replace(t, token=norm.token(t.token.float()), patches=norm.patch(t.patches.float()))
                for norm, t in zip(self.norms, targets)]

    def token_to_teacher_space(self, index: int = 0):
        """The de-standardisation of teacher `index`'s token head output, as fold_into bakes it in at save time."""
        return self.norms[index].token.inverse

    @torch.no_grad()
    def fold_into(self, head_sets: list[nn.Module]) -> None:
        """Each teacher's de-standardisation into its head set (token head: token norm; patch and feature: patch norm)."""
        for heads, norm in zip(head_sets, self.norms):
            norm.token.fold_into_head(heads.token)
            norm.patch.fold_into_head(heads.patch)
            norm.patch.fold_into_head(heads.feature)
