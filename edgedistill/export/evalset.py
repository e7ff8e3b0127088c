"""The evaluation set written beside the model: inputs plus teacher outputs as .npy files.

Bench reads these, so it can measure fidelity on a device from a copied build folder with no
torch and no teacher weights there.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..artifacts import Artifact, atomic_output
from ..config import BuildConfig, short_hash
from ..data.eval_set import evaluation_views
from ..models.preprocess import preprocess_images
from ..models.teacher import create_primary_teacher


def same_view_config(teacher_config: dict, student_config: dict) -> dict:
    """The teacher's data config with the student's field of view (crop_pct, crop_mode): each model
    keeps its own size and normalisation, and both see the same pixels, as in training; with each
    model's own crop, top-1 vs teacher would compare different crops."""
    return {**teacher_config, "crop_pct": student_config["crop_pct"], "crop_mode": student_config.get("crop_mode", "center")}


def write_evalset(cfg: BuildConfig, data_config: dict, workdir: Path, parent: str) -> Artifact:
    views = evaluation_views(cfg.data.source, cfg.bench.eval_images)
    teacher = create_primary_teacher(cfg.teacher)  # the distillation teacher, random weights included
    inputs = preprocess_images(views, data_config)
    teacher_inputs = torch.from_numpy(preprocess_images(views, same_view_config(teacher.data_config, data_config)))
    with torch.no_grad():
        targets = teacher.targets(teacher_inputs)
        logits = teacher.classifier(targets.token) if teacher.classifier is not None else None
    final = workdir / "eval"
    with atomic_output(final) as tmp:
        tmp.mkdir()
        np.save(tmp / "inputs.npy", inputs)
        np.save(tmp / "teacher_embedding.npy", targets.token.numpy())
        if logits is not None:
            np.save(tmp / "teacher_logits.npy", logits.numpy())
    return Artifact.record(workdir, final, kind="evalset", name="evalset", parents=[parent], data_config=data_config,
                           config_hash=evalset_hash(cfg), extra={"images": len(views), "source": cfg.data.source,
                                                                 "teacher_has_classifier": logits is not None})


def evalset_hash(cfg: BuildConfig) -> str:
    """The settings the evaluation set is made from: its images and the teacher that labels them (the first
    teacher, in fp32, so neither its distillation dtype nor further teachers count)."""
    settings = {"source": cfg.data.source, "eval_images": cfg.bench.eval_images,
                "teacher": cfg.hashed_section("teacher", ignore={"teacher.dtype", "teacher.weight", "teacher.extra"})}
    return short_hash(settings)
