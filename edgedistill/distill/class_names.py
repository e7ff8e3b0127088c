"""What each column of the primary teacher's classifier is, which the student's `logits` output keeps:
bench scores that output on a labelled folder by these names (bench.stage.logits_columns).

Known for a teacher from `edgedistill finetune-teacher` (its stamp lists the folder's classes) and for a
teacher with its published ImageNet weights (the offline EfficientNet-Lite0, or a timm hub tag with no
teacher.checkpoint): WordNet synsets as timm names them (n01440764, ...), the ImageNet folders' layout.
A checkpoint of unknown origin has no known names.
"""

from __future__ import annotations

from pathlib import Path

from torch import nn

from ..config import OFFLINE_TEACHER, BuildConfig, TeacherConfig


def classifier_classes(cfg: BuildConfig, classifier: nn.Module | None) -> list[str] | None:
    """The names of the primary teacher classifier's (canonical: norm, Linear) columns, in order; None when unknown."""
    from ..models.teacher import teacher_configs

    if classifier is None:
        return None
    names = finetuned_classes(cfg) or imagenet_classes(teacher_configs(cfg.teacher)[0])
    return names if names and len(names) == classifier[-1].out_features else None


def finetuned_classes(cfg: BuildConfig) -> list[str] | None:
    """The class names a teacher from `edgedistill finetune-teacher` was fine-tuned on; None for any other teacher."""
    from .finetune_teacher import read_stamp

    checkpoint = cfg.teacher.checkpoint
    stamp = read_stamp(Path(checkpoint).expanduser()) if checkpoint else None
    return stamp.get("classes") if stamp else None


def imagenet_classes(teacher: TeacherConfig) -> list[str] | None:
    """The synsets of the ImageNet subset the teacher's published weights were trained on (timm's
    infer_imagenet_subset on its pretrained config, built on the meta device: no weights, no download)."""
    from timm.data import ImageNetInfo, infer_imagenet_subset

    from .cache import timm_shell

    if teacher.name == OFFLINE_TEACHER:
        subset = "imagenet-1k"
    elif teacher.checkpoint or not teacher.pretrained:
        return None  # other weights: whatever they were trained on
    else:
        shell = timm_shell(teacher)
        published = (getattr(shell, "pretrained_cfg", None) or {}).get("num_classes") if shell else None
        # a head resized by model_args is timm's new, random one: its columns are no published classes
        subset = infer_imagenet_subset({"num_classes": published}) if published and shell.num_classes == published else None
    return list(ImageNetInfo(subset).label_names()) if subset else None
