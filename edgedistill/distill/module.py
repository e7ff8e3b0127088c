"""The trainable pair (student backbone + one Proteus head set per teacher) and its loss."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..models.heads import ProteusHeads
from ..models.student import summary_token
from ..models.teacher import TeacherTargets
from ..models.tokens import patch_tokens, token_maps
from .align import align_grid
from .losses import proteus_losses


@dataclass(frozen=True)
class Objective:
    """Level weights, loss kind, and which levels run for this student."""

    token: float = 1.0
    patch: float = 1.0
    feature: float = 1.0
    kind: str = "mse"
    vl: float = 0.0  # DIME-FM's image–text term (vl.py), primary teacher only
    pvl: float = 0.0  # and its pseudo-VL term
    logits: float = 0.0  # KL to the teacher's class distribution through its classifier (logit_kd.py), primary teacher only


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

    def forward(self, x: torch.Tensor, mask: torch.Tensor, targets: list[TeacherTargets], objective: Objective,
                token_terms: tuple = ()) -> tuple[torch.Tensor, dict]:
        """Weighted total loss and detached per-teacher, per-level parts (t0.token, t0.patch, ...).

        `token_terms` (vl.VLBatch, logit_kd.LogitBatch) score the primary teacher's token-head output further;
        each returns named losses (t0.vl, t0.pvl, t0.logits), weighted by the Objective field of that name.

        As in the Proteus reference, the clean input of the whole batch feeds the token and feature
        levels and a masked input of the first M samples (`mask` is [M, N]) the patch level; both
        run through the student as one batch of B + M (token_maps). `targets` arrive already standardised when the job standardises them (standardize.py).
        """
        masked = None
        if objective.patch > 0 and mask.shape[0]:  # a host-side shape: no GPU sync
            tokens, masked_tokens = token_maps(self.backbone, x, mask, self.heads.mask_token)
            masked, _ = patch_tokens(self.backbone, masked_tokens)
        else:
            tokens = self.backbone.forward_features(x)
        summary = summary_token(self.backbone, tokens)
        patches, grid = patch_tokens(self.backbone, tokens)
        total, parts = x.new_zeros((), dtype=torch.float32), {}
        for i, (heads, t, weight) in enumerate(zip(self.head_sets(), targets, self.teacher_weights)):
            t_patches = align_grid(t.patches, t.grid, grid)
            token_pred, feature_pred, feature_target = heads.token(summary), heads.feature(patches), t_patches
            if t.token.shape[-1] == t_patches.shape[-1]:  # the full map: its summary slot is the token head's output (reference)
                feature_pred = torch.cat([token_pred.unsqueeze(1), feature_pred], 1)
                feature_target = torch.cat([t.token.unsqueeze(1), t_patches], 1)
            patch_pred = heads.patch(masked) if masked is not None else None
            levels = proteus_losses(token_pred, t.token, patch_pred, t_patches[:mask.shape[0]], mask,
                                    feature_pred, feature_target, kind=objective.kind)
            total = total + weight * levels.total((objective.token, objective.patch, objective.feature))
            parts.update({f"t{i}.{k}": v for k, v in levels.as_tensors().items()})
            for term in token_terms if i == 0 else ():  # text embeddings and classifier are the primary teacher's
                for name, loss in term.losses(token_pred).items():
                    total = total + weight * getattr(objective, name) * loss
                    parts[f"t0.{name}"] = loss.detach()
        return total, parts
