"""The trainable pair (student backbone + one Proteus head set per teacher) and one loss pass."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..models.heads import ProteusHeads
from ..models.student import summary_token
from ..models.teacher import TeacherTargets
from ..models.tokens import patch_tokens, token_map
from .align import align_grid
from .losses import proteus_losses


@dataclass(frozen=True)
class Objective:
    """Level weights, loss kind, and which levels run for this student."""

    token: float = 1.0
    patch: float = 1.0
    feature: float = 1.0
    kind: str = "mse"


class DistillModule(nn.Module):
    def __init__(self, backbone: nn.Module, heads: ProteusHeads, extra_heads: list[ProteusHeads] = (),
                 teacher_weights: list[float] = (1.0,)):
        super().__init__()
        self.backbone = backbone
        self.heads = heads  # the primary teacher's heads (saved beside the student, used to deploy)
        self.extra_heads = nn.ModuleList(extra_heads)
        self.teacher_weights = list(teacher_weights)

    def head_sets(self) -> list[ProteusHeads]:
        return [self.heads, *self.extra_heads]

    def no_weight_decay(self) -> set[str]:
        inner = getattr(self.backbone, "no_weight_decay", lambda: set())()
        return {f"backbone.{name}" for name in inner} | {"heads.mask_token"}

    def forward(self, x: torch.Tensor, mask: torch.Tensor, targets: list[TeacherTargets], objective: Objective) -> tuple[torch.Tensor, dict]:
        """Weighted total loss and detached per-teacher, per-level parts (t0.token, t0.patch, ...).
        `targets` arrive already standardised when the job standardises them (standardize.py)."""
        # No `mask.any()` test: it would sync with the GPU; an all-False mask is a no-op anyway.
        tokens = token_map(self.backbone, x, mask if objective.patch > 0 else None, self.heads.mask_token)
        summary = summary_token(self.backbone, tokens)
        patches, grid = patch_tokens(self.backbone, tokens)
        clean = ~mask.any(dim=1)
        total, parts = x.new_zeros((), dtype=torch.float32), {}
        for i, (heads, t, weight) in enumerate(zip(self.head_sets(), targets, self.teacher_weights)):
            t_token, t_patches = t.token, align_grid(t.patches, t.grid, grid)
            # The feature level is the full token map; the summary joins it when widths agree (ViTs).
            with_summary = summary.shape[-1] == patches.shape[-1] and t_token.shape[-1] == t_patches.shape[-1]
            full = torch.cat([summary.unsqueeze(1), patches], 1) if with_summary else patches
            t_full = torch.cat([t_token.unsqueeze(1), t_patches], 1) if with_summary else t_patches
            levels = proteus_losses(heads.token(summary), t_token, heads.patch(patches), t_patches, mask,
                                    heads.feature(full), t_full, clean, kind=objective.kind)
            total = total + weight * levels.total((objective.token, objective.patch, objective.feature))
            parts.update({f"t{i}.{k}": v for k, v in levels.as_tensors().items()})
        return total, parts
