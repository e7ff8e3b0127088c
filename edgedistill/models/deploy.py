"""The deployable student: backbone -> summary token -> token head (teacher space) [-> logits]."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from .student import load_student, summary_token


class DeployModel(nn.Module):
    """Outputs `embedding` (student summary in the teacher's token space) and, when the teacher
    has a classifier, `logits` (the teacher's classifier applied to that embedding)."""

    def __init__(self, backbone: nn.Module, token_head: nn.Module, classifier: nn.Module | None):
        super().__init__()
        self.backbone = backbone
        self.token_head = token_head
        self.classifier = classifier

    @property
    def output_names(self) -> list[str]:
        return ["embedding", "logits"] if self.classifier is not None else ["embedding"]

    def forward(self, x: torch.Tensor):
        embedding = self.token_head(summary_token(self.backbone, self.backbone.forward_features(x)))
        if self.classifier is None:
            return embedding
        return embedding, self.classifier(embedding)


def load_deploy_model(student_dir: Path) -> tuple[DeployModel, dict]:
    backbone, heads, classifier, spec = load_student(student_dir)
    return DeployModel(backbone, heads.token, classifier).eval(), spec
