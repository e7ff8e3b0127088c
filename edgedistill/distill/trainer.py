"""A flat distillation loop (torchtune style): AdamW, cosine schedule with warm-up, optional EMA."""

from __future__ import annotations

import contextlib
import csv
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch.utils.data import DataLoader, RandomSampler

from ..config import DistillConfig
from ..models.preprocess import to_model_input
from ..models.teacher import Teacher
from ..progress import progress_bar
from .masking import random_masks
from .module import DistillModule


@dataclass
class TrainHistory:
    rows: list = field(default_factory=list)

    def write_csv(self, path: Path) -> None:
        if not self.rows:
            return
        with open(path, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(self.rows[0]))
            writer.writeheader()
            writer.writerows(self.rows)

    def mean_loss(self, first: bool, window: int = 10) -> float:
        rows = self.rows[:window] if first else self.rows[-window:]
        return sum(r["loss"] for r in rows) / max(1, len(rows))


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def train(module: DistillModule, teacher: Teacher, dataset, cfg: DistillConfig, student_data_config: dict, device: torch.device) -> TrainHistory:
    from timm.optim import create_optimizer_v2
    from timm.scheduler import CosineLRScheduler

    module.to(device).train()
    teacher.to(device)
    optimizer = create_optimizer_v2(module, opt="adamw", lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = CosineLRScheduler(optimizer, t_initial=cfg.steps, warmup_t=cfg.warmup_steps, warmup_lr_init=cfg.lr * 0.01, lr_min=cfg.lr * 0.01, t_in_epochs=False)
    ema = None
    if cfg.ema_decay > 0:
        from timm.utils import ModelEmaV3

        ema = ModelEmaV3(module, decay=cfg.ema_decay)
    generator = torch.Generator().manual_seed(cfg.seed)
    sampler = RandomSampler(dataset, replacement=True, num_samples=cfg.steps * cfg.batch_size, generator=generator)
    loader = DataLoader(dataset, batch_size=cfg.batch_size, sampler=sampler, num_workers=cfg.num_workers, drop_last=True, pin_memory=device.type == "cuda")
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else contextlib.nullcontext()
    n_patches = None
    history = TrainHistory()
    weights = (cfg.token_weight, cfg.patch_weight, cfg.feature_weight)
    start = time.perf_counter()
    with progress_bar() as bar:
        task = bar.add_task("distill", total=cfg.steps, info="")
        for step, images01 in enumerate(loader):
            images01 = images01.to(device, non_blocking=True)
            with torch.no_grad(), autocast:
                targets = teacher.targets(to_model_input(images01, teacher.data_config))
            x = to_model_input(images01, student_data_config)
            if n_patches is None:
                n_patches = targets_grid_size(module, x)
            mask = random_masks(x.shape[0], n_patches, cfg.mask_share if cfg.patch_weight > 0 else 0.0, cfg.mask_ratio, generator, device)
            with autocast:
                levels = module(x, mask, targets, cfg.loss)
                loss = levels.total(weights)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(module.parameters(), cfg.grad_clip)
            optimizer.step()
            scheduler.step_update(step + 1)
            if ema is not None:
                ema.update(module, step=step)
            elapsed = time.perf_counter() - start
            row = {"step": step + 1, "loss": loss.item(), **levels.as_floats(), "lr": optimizer.param_groups[0]["lr"], "images_per_s": (step + 1) * cfg.batch_size / elapsed}
            history.rows.append(row)
            bar.update(task, advance=1, info=f"loss {row['loss']:.4f}  {row['images_per_s']:.0f} img/s")
    if ema is not None:
        module.load_state_dict(ema.module.state_dict())
    return history


@torch.no_grad()
def targets_grid_size(module: DistillModule, x: torch.Tensor) -> int:
    """Number of patch tokens the student produces for inputs shaped like x."""
    from ..models.tokens import patch_tokens

    was_training = module.training
    module.eval()
    patches, _ = patch_tokens(module.backbone, module.backbone.forward_features(x[:1]))
    module.train(was_training)
    return patches.shape[1]
