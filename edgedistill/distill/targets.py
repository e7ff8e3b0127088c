"""Where teacher targets come from: the teachers run online, or the teacher cache's stored features."""

from __future__ import annotations

import torch

from ..models.preprocess import to_model_input
from ..models.teacher import Teacher, TeacherTargets


class OnlineTargets:
    """Runs every teacher on the same augmented view, each at its own input size and normalisation."""

    def __init__(self, teachers: list[Teacher]):
        self.teachers = teachers

    def to(self, device: torch.device) -> "OnlineTargets":
        for teacher in self.teachers:
            teacher.to(device)
        return self

    @torch.no_grad()
    def __call__(self, batch: dict, view: torch.Tensor) -> list[TeacherTargets]:
        return [t.targets(to_model_input(view, t.data_config)) for t in self.teachers]


class CachedTargets:
    """Reads the targets stored by cache_teacher from the batch (`t0.token`, `t0.patches`, ...)."""

    def __init__(self, grids: list[tuple[int, int]]):
        self.grids = [tuple(g) for g in grids]

    def to(self, device: torch.device) -> "CachedTargets":
        self.device = device
        return self

    def __call__(self, batch: dict, view: torch.Tensor) -> list[TeacherTargets]:
        device = view.device
        return [
            TeacherTargets(batch[f"t{i}.token"].to(device, non_blocking=True), batch[f"t{i}.patches"].to(device, non_blocking=True), grid)
            for i, grid in enumerate(self.grids)
        ]
