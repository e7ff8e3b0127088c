"""The trainable pair (student backbone + Proteus heads) and one distillation forward pass."""

from __future__ import annotations

import torch
from torch import nn

from ..models.heads import ProteusHeads
from ..models.student import summary_token
from ..models.teacher import TeacherTargets
from ..models.tokens import patch_tokens, token_map
from .align import align_grid
from .losses import LevelLosses, proteus_losses


class DistillModule(nn.Module):
    def __init__(self, backbone: nn.Module, heads: ProteusHeads):
        super().__init__()
        self.backbone = backbone
        self.heads = heads

    def no_weight_decay(self) -> set[str]:
        inner = getattr(self.backbone, "no_weight_decay", lambda: set())()
        return {f"backbone.{name}" for name in inner} | {"heads.mask_token"}

    def forward(self, x: torch.Tensor, mask: torch.Tensor, targets: TeacherTargets, loss_kind: str = "mse") -> LevelLosses:
        tokens = token_map(self.backbone, x, mask if mask.any() else None, self.heads.mask_token)
        summary = summary_token(self.backbone, tokens)
        patches, grid = patch_tokens(self.backbone, tokens)
        teacher_patches = align_grid(targets.patches, targets.grid, grid)
        full = torch.cat([summary.unsqueeze(1), patches], dim=1)
        teacher_full = torch.cat([targets.token.unsqueeze(1), teacher_patches], dim=1)
        clean = ~mask.any(dim=1)
        return proteus_losses(
            self.heads.token(summary), targets.token,
            self.heads.patch(patches), teacher_patches, mask,
            self.heads.feature(full), teacher_full, clean,
            kind=loss_kind,
        )
