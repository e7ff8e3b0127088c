"""Task-output distillation (Hinton et al.; step 2 of task-oriented transfer, Vemulapalli et al.): the
primary teacher's classifier, frozen, scores both the teacher's embedding and the student's token-head
output in the teacher's space, and the student matches the teacher's softened class distribution:
KL(softmax(t/T) ‖ softmax(s/T))·T², a mean over the batch. The same classifier is the deployed `logits`
output, so this term trains exactly what that output shows.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from .losses import softmax_kl


def logit_kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    return softmax_kl(student_logits.float() / temperature, teacher_logits.float() / temperature).mean() * temperature ** 2


@dataclass
class LogitBatch:
    teacher_logits: torch.Tensor  # [B, C] from the unstandardised teacher embedding
    classifier: nn.Module
    temperature: float
    to_teacher_space: Callable[[torch.Tensor], torch.Tensor]

    @torch.compiler.disable  # eager, as VLBatch.losses: a compiled step neither traces nor guards on this object
    def losses(self, token_pred: torch.Tensor) -> dict[str, torch.Tensor]:
        with torch.autocast(token_pred.device.type, enabled=False):  # softmax of logits / T in float32, as VLBatch
            student_logits = self.classifier(self.to_teacher_space(token_pred.float()))
            return {"logits": logit_kd_loss(student_logits, self.teacher_logits, self.temperature)}


class TeacherLogits:
    """The primary teacher's classifier, frozen and outside the trained module (no optimizer state, no checkpoint entry)."""

    def __init__(self, classifier: nn.Module, temperature: float):
        self.classifier = copy.deepcopy(classifier).float().eval().requires_grad_(False)
        self.temperature = temperature

    def to(self, device: torch.device) -> "TeacherLogits":
        self.classifier.to(device)
        return self

    def batch(self, teacher_token: torch.Tensor, to_teacher_space) -> LogitBatch:
        with torch.no_grad(), torch.autocast(teacher_token.device.type, enabled=False):
            teacher_logits = self.classifier(teacher_token.float())
        return LogitBatch(teacher_logits, self.classifier, self.temperature, to_teacher_space)
