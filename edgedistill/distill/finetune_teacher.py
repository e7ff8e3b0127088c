"""`edgedistill finetune-teacher`: step 1 of task-oriented transfer. The primary teacher gets a new
classifier for the labelled folder's classes and is fine-tuned whole on its images; the result is a
plain timm checkpoint (safetensors) that `teacher.checkpoint` loads, with `teacher.model_args.num_classes`
set to the class count. Distilling with `distill.logit_weight` then transfers its task outputs (step 2).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from ..artifacts import atomic_output, safetensors_stamp, save_safetensors
from ..config import OFFLINE_TEACHER, BuildConfig, TeacherConfig
from ..errors import EdgedistillError
from ..progress import console
from .finetune import FinetuneSettings, finetune, split_labelled

STAMP_KEY = "edgedistill.finetune"  # safetensors metadata: what the file was fine-tuned from and on


HEAD_INITS = ("random", "probe")


def finetune_teacher(cfg: BuildConfig, labels: Path, out: Path, settings: FinetuneSettings, head_init: str = "random") -> dict:
    """Fine-tune the config's primary teacher on `labels` (one subfolder per class); write it to `out`.
    Returns the stamp stored in the file: the timm name and model_args to build it with, and the run's record."""
    from ..models.open_clip_teacher import PREFIX
    from ..models.preprocess import resolve_data_config
    from ..models.teacher import teacher_configs, teacher_seed
    from ..teacher_identity import teacher_identity
    from .trainer import autocast_for, pick_device

    settings.check()
    if head_init not in HEAD_INITS:
        raise EdgedistillError(f"head init '{head_init}' is not one of {', '.join(HEAD_INITS)}", "pass --head-init random or --head-init probe")
    teacher = teacher_configs(cfg.teacher)[0]
    if teacher.name.startswith(PREFIX):
        raise EdgedistillError(f"open_clip teacher '{teacher.name}' has no classifier to fine-tune (its head is the image-text projection)",
                               "fine-tune a timm model (e.g. vit_base_patch16_clip_224.openai), or distil its text similarities with distill.text_embeddings")
    split = split_labelled(labels, settings.holdout, "LABELS")  # before the model: a bad folder fails in seconds, not after a download
    check_output(out, labels, teacher)  # after: it creates OUT's folder, which a refused folder must not leave behind
    if cfg.teacher.extra:
        console.print(f"finetune-teacher fine-tunes the primary teacher {teacher.name}; teacher.extra is not used")
    device = pick_device(cfg.distill.device)
    with torch.random.fork_rng(devices=[]):  # random teacher weights as distillation builds them; the new head seeded too
        torch.manual_seed(teacher_seed(0))
        model, architecture, model_args = _build(teacher)
        model.reset_classifier(len(split.classes))
    size = teacher.img_size or model_args.get("img_size")
    data_config = resolve_data_config(model, size)
    autocast = autocast_for(cfg.distill, device)
    start = {"head_init": "random"}
    if head_init == "probe":  # LP-FT: the new head classifies before the backbone moves (probe_head.py)
        from .probe_head import probe_head

        start = probe_head(model, split, data_config, device, autocast, settings.batch_size, cfg.distill.num_workers)
    record = finetune(model, model.get_classifier(), split, data_config, settings, cfg.data, device,
                      autocast, cfg.distill.num_workers, label="finetune-teacher")
    stamp = {"architecture": architecture, "img_size": teacher.img_size,
             "model_args": {**model_args, "num_classes": len(split.classes)}, "from": teacher_identity(teacher), **start, **record}
    with atomic_output(out) as tmp:
        save_safetensors({k: v.detach().cpu() for k, v in model.state_dict().items()}, tmp,
                         metadata={"format": "pt", STAMP_KEY: json.dumps(stamp)})
    return stamp


def _build(teacher: TeacherConfig):
    """(the timm model with the teacher's weights, its timm name, its model_args); the offline teacher is timm's
    tf_efficientnet_lite0 with the shipped ImageNet weights."""
    from ..models.offline_teacher import ARCH, load_offline_efficientnet_lite0
    from ..models.teacher import create_timm_teacher

    if teacher.name == OFFLINE_TEACHER:
        return load_offline_efficientnet_lite0(), ARCH, {}
    model = create_timm_teacher(teacher)
    if not hasattr(model, "reset_classifier"):
        raise EdgedistillError(f"teacher '{teacher.name}' has no timm classifier to replace", "fine-tune a timm classification model")
    # the name without its pretrained tag or hub prefix: the weights come from the checkpoint from now on
    architecture = (getattr(model, "pretrained_cfg", None) or {}).get("architecture") or teacher.name.split(".")[0]
    return model, architecture, dict(teacher.model_args)


def read_stamp(path: Path) -> dict | None:
    """The fine-tune stamp of a checkpoint this command wrote; None for any other file."""
    return safetensors_stamp(path, STAMP_KEY) or None


def check_output(out: Path, labels: Path, teacher: TeacherConfig) -> None:
    """Before any model is built: OUT is a .safetensors path that is not an input, and replaces only a file this command wrote."""
    from ..output_files import check_replaceable, check_suffix, check_writable

    check_suffix(out, ".safetensors", "fine-tuned teacher")
    check_replaceable(out, "fine-tuned teacher", {"teacher.checkpoint": teacher.checkpoint, "the labelled folder": labels},
                      lambda p: read_stamp(p) is not None, "runs/teacher_ft.safetensors")
    check_writable(out, "the fine-tuned teacher")


def distill_settings(out: Path, stamp: dict) -> list[str]:
    """The --set lines that distil from the fine-tuned teacher, with its task outputs (step 2)."""
    args = ", ".join(f"{k}: {json.dumps(v)}" for k, v in stamp["model_args"].items())
    lines = [f"teacher.name={stamp['architecture']}", f"teacher.checkpoint={out}", f"teacher.model_args={{{args}}}"]
    if stamp.get("img_size"):
        lines.append(f"teacher.img_size={stamp['img_size']}")
    return lines + ["distill.logit_weight=1"]
