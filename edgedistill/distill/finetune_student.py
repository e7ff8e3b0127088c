"""Step 3 of task-oriented transfer (Vemulapalli et al.): after distillation, the student as it deploys
(backbone -> token head -> the teacher's classifier, the `logits` output) is fine-tuned on the labelled
folder `distill.finetune_labels`. The classifier's classes must be the folder's, in the same order:
a teacher fine-tuned on that folder (`edgedistill finetune-teacher`, step 1) has exactly those.
"""

from __future__ import annotations


import torch
from torch import nn

from ..config import BuildConfig
from ..errors import EdgedistillError
from ..models.deploy import DeployModel
from .class_names import finetuned_classes
from .finetune import FinetuneSettings, LabelledSplit, finetune

STEP_1_FIX = ("fine-tune the teacher on that folder first (edgedistill finetune-teacher LABELS OUT.safetensors) and distil from it, "
              "or unset distill.finetune_labels")


class _Logits(nn.Module):
    """The deployed student's `logits` output alone, what the labels score."""

    def __init__(self, deployed: DeployModel):
        super().__init__()
        self.deployed = deployed

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.deployed(x)[1]


def settings_of(cfg: BuildConfig) -> FinetuneSettings:
    d = cfg.distill
    # its own warm-up (FinetuneSettings'), not distillation's: thousands of warm-up steps there would leave step 3 rising all run
    return FinetuneSettings(steps=d.finetune_steps, batch_size=d.batch_size, lr=d.finetune_lr, weight_decay=d.weight_decay,
                            holdout=d.finetune_holdout, seed=d.seed)


def check_labels(cfg: BuildConfig, split: LabelledSplit, classifier: nn.Module | None, teacher_name: str) -> None:
    """Before training: the teacher's classifier (canonical: norm, Linear) scores the labelled folder's classes."""
    labels = cfg.distill.finetune_labels
    if classifier is None:
        raise EdgedistillError(f"distill.finetune_labels is set, but teacher '{teacher_name}' has no classifier to fine-tune with the student",
                               STEP_1_FIX)
    out = classifier[-1].out_features
    if out != len(split.classes):
        raise EdgedistillError(f"teacher '{teacher_name}' scores {out} classes, but distill.finetune_labels '{labels}' holds {len(split.classes)}",
                               STEP_1_FIX)
    recorded = finetuned_classes(cfg)
    if recorded is not None and recorded != split.classes:
        raise EdgedistillError(f"the teacher was fine-tuned on classes {_names(recorded)}, but distill.finetune_labels '{labels}' holds "
                               f"{_names(split.classes)}", "fine-tune the student on the teacher's classes (the same class subfolders)")


def finetune_student(cfg: BuildConfig, split: LabelledSplit, backbone: nn.Module, token_head: nn.Module, classifier: nn.Module,
                     data_config: dict, device: torch.device) -> dict:
    """Fine-tune the three parts in place (they end on the CPU); returns the run's record for student.json."""
    from .trainer import autocast_for

    deployed = DeployModel(backbone, token_head, classifier)
    record = finetune(_Logits(deployed), classifier, split, data_config, settings_of(cfg), cfg.data, device,
                      autocast_for(cfg.distill, device), cfg.distill.num_workers, label="finetune-student")
    deployed.cpu().eval()
    return record


def _names(classes: list[str]) -> str:
    return ", ".join(classes[:4]) + (f", ... ({len(classes)})" if len(classes) > 4 else "")
