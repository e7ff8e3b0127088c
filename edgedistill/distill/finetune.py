"""Supervised fine-tuning on a few labelled images (task-oriented transfer, Vemulapalli et al., steps 1
and 3): the teacher before distillation, the student after it.

A flat loop in the distillation loop's style: timm's training transform (the build's data.auto_augment
and data.scale_min), cross-entropy with label smoothing, timm's AdamW with a cosine schedule and warm-up,
bf16 autocast on CUDA. The classifier, new or not, learns at ten times the backbone's rate, the usual
practice when a pretrained backbone meets a head that must move further. A stratified held-out share of
the labelled folder is scored before and after, so the run says whether it helped.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from ..bench.labelled import list_labelled
from ..data.images import ImageSource
from ..errors import EdgedistillError
from ..models.preprocess import eval_transform
from ..progress import console, progress_bar

HEAD_LR_SCALE = 10.0
LABEL_SMOOTHING = 0.1


@dataclass(frozen=True)
class FinetuneSettings:
    steps: int = 300
    batch_size: int = 32
    lr: float = 1e-4  # the backbone's; the classifier's is HEAD_LR_SCALE times this
    weight_decay: float = 0.05
    warmup_steps: int = 20
    holdout: float = 0.2  # share of each class scored, never trained on; 0: train on all, score nothing
    seed: int = 0

    def check(self) -> None:
        for name, value, ok in (("steps", self.steps, self.steps >= 1), ("batch size", self.batch_size, self.batch_size >= 1),
                                ("lr", self.lr, self.lr > 0 and math.isfinite(self.lr)),
                                ("holdout", self.holdout, 0 <= self.holdout < 1)):
            if not ok:
                raise EdgedistillError(f"fine-tune {name} {value} is out of range",
                                       "use steps and batch size >= 1, a positive lr and a holdout in [0, 1)")


@dataclass
class LabelledSplit:
    images: ImageSource  # every listed image, the training ones first
    labels: np.ndarray
    classes: list[str]
    train: list[int]  # indices into images
    held_out: list[int]


def split_labelled(root: str | Path, holdout: float, setting: str = "the labelled folder") -> LabelledSplit:
    """The folder's images (ImageFolder layout), with `holdout` of each class, evenly spaced in name
    order (the same ones every run), kept apart for scoring. Every class keeps one training image and,
    with a holdout above 0, gives at least one. `setting` names the folder in errors."""
    paths, labels, classes = list_labelled(root, setting=setting)
    train, held_out = [], []
    for label in range(len(classes)):
        members = np.flatnonzero(labels == label).tolist()  # 2 or more (list_labelled)
        count = max(1, min(len(members) - 1, round(len(members) * holdout))) if holdout > 0 else 0
        picked = {members[round((i + 0.5) * len(members) / count)] for i in range(count)} if count else set()
        held_out += sorted(picked)
        train += [m for m in members if m not in picked]
    return LabelledSplit(ImageSource(str(root), paths=paths), labels, classes, train, held_out)


class _Labelled(Dataset):
    """(view, label) of image `indices[i]`; an unreadable image gives label -1 (dropped in the loss)."""

    def __init__(self, split: LabelledSplit, indices: list[int], transform, input_size):
        self.split, self.indices, self.transform, self.input_size = split, indices, transform, tuple(input_size)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int):
        index = self.indices[i]
        image = self.split.images.load(index)
        if image is None:
            return torch.zeros(self.input_size), -1
        return self.transform(image), int(self.split.labels[index])


def train_transform(data_config: dict, auto_augment: str, scale_min: float):
    from timm.data import create_transform

    return create_transform(input_size=tuple(data_config["input_size"]), is_training=True, scale=(scale_min, 1.0),
                            auto_augment=auto_augment or None, interpolation=data_config["interpolation"],
                            mean=tuple(data_config["mean"]), std=tuple(data_config["std"]))


@torch.no_grad()
def held_out_accuracy(model: nn.Module, split: LabelledSplit, data_config: dict, device, autocast, batch_size: int,
                      workers: int) -> float | None:
    """Top-1 accuracy on the held-out images that decode; None when there are none."""
    if not split.held_out:
        return None
    was_training = model.training
    model.eval()
    loader = DataLoader(_Labelled(split, split.held_out, eval_transform(data_config), data_config["input_size"]),
                        batch_size=batch_size, num_workers=workers)
    right = seen = 0
    for views, labels in loader:
        keep = labels >= 0
        if not bool(keep.any()):
            continue
        with autocast:
            logits = model(views[keep].to(device))
        right += int((logits.float().argmax(-1).cpu() == labels[keep]).sum())
        seen += int(keep.sum())
    model.train(was_training)
    return right / seen if seen else None


def finetune(model: nn.Module, head: nn.Module, split: LabelledSplit, data_config: dict, settings: FinetuneSettings,
             data_cfg, device: torch.device, autocast, workers: int = 0, label: str = "fine-tune") -> dict:
    """Train `model` (images -> logits over split.classes; `head` is its classifier) in place on the
    split's training images. Returns the record: steps, the last losses, held-out accuracy before/after."""
    from timm.scheduler import CosineLRScheduler

    from .stage import seed_everything

    settings.check()
    seed_everything(settings.seed)  # timm's augmentations draw from Python's, numpy's and torch's global generators
    model.to(device).train().requires_grad_(True)  # whole: the teacher's classifier comes to step 3 frozen
    optimizer = torch.optim.AdamW(parameter_groups(model, head, settings), lr=settings.lr,
                                  **({"fused": True} if device.type == "cuda" else {}))
    # each group's own rate is its peak (timm's scheduler reads it per group); the floor and the start are the backbone's
    warmup = min(settings.warmup_steps, settings.steps - 1)
    scheduler = CosineLRScheduler(optimizer, t_initial=settings.steps, warmup_t=warmup,
                                  warmup_lr_init=settings.lr * 0.01, lr_min=settings.lr * 0.01, t_in_epochs=False)
    before = held_out_accuracy(model, split, data_config, device, autocast, settings.batch_size, workers)
    dataset = _Labelled(split, split.train, train_transform(data_config, data_cfg.auto_augment, data_cfg.scale_min),
                        data_config["input_size"])
    generator = torch.Generator().manual_seed(settings.seed)
    loader = DataLoader(dataset, batch_size=settings.batch_size, shuffle=True, drop_last=len(dataset) > settings.batch_size,
                        generator=generator, num_workers=workers, persistent_workers=workers > 0)
    criterion = nn.CrossEntropyLoss(label_smoothing=LABEL_SMOOTHING, ignore_index=-1)
    batches = itertools.chain.from_iterable(itertools.repeat(loader))  # epochs back to back, each reshuffled
    losses, idle = [], 0
    with progress_bar() as bar:
        task = bar.add_task(label, total=settings.steps, info="")
        for step, (views, labels) in zip(range(settings.steps), batches):
            if bool((labels < 0).all()):
                idle += 1  # every image of the batch unreadable: nothing to learn from
                continue
            with autocast:
                loss = criterion(model(views.to(device, non_blocking=True)).float(), labels.to(device))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            scheduler.step_update(step + 1)
            losses.append(float(loss.detach()))
            if not math.isfinite(losses[-1]):
                raise EdgedistillError(f"fine-tuning diverged at step {step} (loss {losses[-1]})", "lower the learning rate (finetune-teacher --lr, or distill.finetune_lr)")
            bar.update(task, advance=1, info=f"loss {losses[-1]:.3f}")
    model.eval()
    after = held_out_accuracy(model, split, data_config, device, autocast, settings.batch_size, workers)
    record = {"labels": str(Path(split.images.source).resolve()), "classes": split.classes, "train_images": len(split.train),
              "held_out_images": len(split.held_out), "steps": settings.steps, "steps_without_a_readable_image": idle,
              "warmup_steps": warmup, "batch_size": settings.batch_size,
              "lr": settings.lr, "head_lr_scale": HEAD_LR_SCALE, "label_smoothing": LABEL_SMOOTHING, "seed": settings.seed,
              "final_loss": round(float(np.mean(losses[-10:])), 4) if losses else None,
              "held_out_top1_before": _rounded(before), "held_out_top1_after": _rounded(after)}
    if after is not None:
        console.print(f"{label}: held-out top-1 {_percent(before)} -> {_percent(after)} on {len(split.held_out)} images")
    return record


def parameter_groups(model: nn.Module, head: nn.Module, settings: FinetuneSettings) -> list[dict]:
    """AdamW groups: the classifier at HEAD_LR_SCALE times the rate. Weight decay is timm's
    param_groups_weight_decay (what distillation's create_optimizer_v2 uses): none on tensors of one
    dimension or less, on biases, nor on what a module's no_weight_decay() lists (a ViT's cls_token and
    pos_embed), whichever submodule it sits in (the deployed student wraps its backbone)."""
    from timm.optim import param_groups_weight_decay

    head_ids = {id(p) for p in head.parameters()}
    if not head_ids or not head_ids <= {id(p) for p in model.parameters()}:
        raise EdgedistillError("the classifier to fine-tune is not part of the model", "pass the classifier module the model applies")
    groups = []
    for group in param_groups_weight_decay(model, settings.weight_decay, no_weight_decay_list=no_weight_decay_patterns(model)):
        for in_head in (False, True):
            params = [p for p in group["params"] if (id(p) in head_ids) == in_head]
            if params:
                groups.append({"params": params, "lr": settings.lr * (HEAD_LR_SCALE if in_head else 1.0),
                               "weight_decay": group["weight_decay"]})
    return groups


def no_weight_decay_patterns(model: nn.Module) -> set[str]:
    """Every submodule's no_weight_decay() names (fnmatch patterns in timm), as full parameter names of `model`."""
    patterns = set()
    for prefix, module in model.named_modules():
        listed = getattr(module, "no_weight_decay", None)
        if callable(listed):
            patterns |= {f"{prefix}.{name}" if prefix else name for name in listed()}
    return patterns


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"
