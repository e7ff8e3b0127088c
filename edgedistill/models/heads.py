"""Proteus distillation heads: one `LayerNorm -> Linear` head per level, plus the mask token."""

from __future__ import annotations

import torch
from torch import nn


def projection_head(in_dim: int, out_dim: int) -> nn.Sequential:
    return nn.Sequential(nn.LayerNorm(in_dim), nn.Linear(in_dim, out_dim))


class ProteusHeads(nn.Module):
    """Token, patch and feature heads mapping student tokens into the teacher's spaces."""

    def __init__(self, student_dim: int, teacher_dim: int, teacher_patch_dim: int | None = None, summary_dim: int | None = None, mask_token: bool = True):
        super().__init__()
        patch_dim = teacher_patch_dim or teacher_dim
        # The student's pooled summary can be wider than its tokens (efficientvit_b's head MLP).
        self.token = projection_head(summary_dim or student_dim, teacher_dim)
        self.patch = projection_head(student_dim, patch_dim)
        self.feature = projection_head(student_dim, patch_dim)
        # Learned token that replaces masked patch embeddings for the patch-level objective;
        # one is enough, so the head sets of further teachers have none.
        if mask_token:
            self.mask_token = nn.Parameter(torch.zeros(1, 1, student_dim))
            nn.init.trunc_normal_(self.mask_token, std=0.02)
        else:
            self.mask_token = None


def canonical_classifier(classifier: nn.Module | None) -> nn.Sequential | None:
    """Normalise a teacher's token->logits module to Sequential(norm-or-Identity, Linear)."""
    if classifier is None:
        return None
    if isinstance(classifier, nn.Linear):
        return nn.Sequential(nn.Identity(), classifier)
    if isinstance(classifier, nn.Sequential) and len(classifier) == 2 and isinstance(classifier[1], nn.Linear):
        return classifier
    raise TypeError(f"unsupported classifier module {type(classifier).__name__}")


def build_classifier(spec: dict) -> nn.Sequential:
    """Recreate a canonical classifier from its student.json description."""
    norm = nn.LayerNorm(spec["in_features"]) if spec.get("norm") else nn.Identity()
    return nn.Sequential(norm, nn.Linear(spec["in_features"], spec["out_features"]))


def describe_classifier(classifier: nn.Sequential) -> dict:
    return {"norm": isinstance(classifier[0], nn.LayerNorm), "in_features": classifier[1].in_features, "out_features": classifier[1].out_features}
