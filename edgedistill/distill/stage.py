"""Stage `distill`: teacher + images -> student/ (student.safetensors, student.json, heads, log)."""

from __future__ import annotations

import copy
import random
from pathlib import Path

import numpy as np
import torch

from ..artifacts import Artifact, atomic_output
from ..config import BuildConfig
from ..data.augment import AugmentedImages
from ..data.sources import resolve_image_paths
from ..models.heads import ProteusHeads, canonical_classifier
from ..models.student import create_student, save_student, student_dim
from ..models.teacher import create_teacher
from .module import DistillModule
from .trainer import pick_device, train

CONFIG_SECTIONS = ("teacher", "student", "data", "distill")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def run(cfg: BuildConfig, inputs: dict, workdir: Path) -> Artifact:
    seed_everything(cfg.distill.seed)
    device = pick_device(cfg.distill.device)
    teacher = create_teacher(cfg.teacher)
    backbone, data_config = create_student(cfg.student)
    heads = ProteusHeads(student_dim(backbone), teacher.dim, teacher.patch_dim)
    paths = resolve_image_paths(cfg.data.source, cfg.data.max_images)
    view_size = max(teacher.data_config["input_size"][-1], data_config["input_size"][-1])
    dataset = AugmentedImages(paths, view_size)
    module = DistillModule(backbone, heads)
    history = train(module, teacher, dataset, cfg.distill, data_config, device)
    module.cpu().eval()
    classifier = canonical_classifier(copy.deepcopy(teacher.classifier).cpu()) if teacher.classifier is not None else None
    spec = {
        "architecture": cfg.student.name,
        "img_size": cfg.student.img_size,
        "model_args": dict(cfg.student.model_args),
        "num_classes": 0,
        "student_dim": student_dim(backbone),
        "data_config": data_config,
        "teacher": {"name": cfg.teacher.name, "dim": teacher.dim, "patch_dim": teacher.patch_dim, "grid": list(teacher.grid), "data_config": teacher.data_config},
        "train": {"steps": cfg.distill.steps, "batch_size": cfg.distill.batch_size, "images": len(dataset), "skipped_images": len(dataset.decoder.failures),
                  "loss_first": history.mean_loss(first=True), "loss_last": history.mean_loss(first=False), "device": str(device)},
    }
    final = workdir / "student"
    with atomic_output(final) as tmp:
        save_student(tmp, module.backbone, module.heads, classifier, spec)
        history.write_csv(tmp / "train_log.csv")
    return Artifact.record(
        workdir, final, kind="student", name="student", precision="fp32", backend="torch",
        config_hash=cfg.section_hash(*CONFIG_SECTIONS), data_config=data_config, extra={"architecture": cfg.student.name, "train": spec["train"]},
    )
