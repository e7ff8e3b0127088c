"""Frozen teachers and the targets they provide: a summary token, patch tokens and logits.

Any timm model works: ViTs give (CLS or pooled) token + patch tokens from the final normed
token map; CNNs give the pooled feature as token and their last feature map as patch tokens.
"""

from __future__ import annotations

from dataclasses import dataclass

import timm
import torch
from torch import nn

from ..config import OFFLINE_TEACHER, TeacherConfig
from ..errors import EdgedistillError
from .offline_teacher import load_offline_efficientnet_lite0
from .preprocess import resolve_data_config
from .tokens import infer_grid


@dataclass
class TeacherTargets:
    token: torch.Tensor  # [B, D] summary (CLS token or pooled feature)
    patches: torch.Tensor  # [B, H*W, D] spatial tokens on the teacher's grid
    grid: tuple[int, int]  # (H, W) of the patch tokens


def split_feature_map(model: nn.Module, features: torch.Tensor) -> TeacherTargets:
    """Turn forward_features output (NCHW map or NLC tokens) into token + patch targets."""
    if features.ndim == 4:  # CNN: [B, C, H, W]; token = the average pool timm heads use
        b, c, h, w = features.shape
        return TeacherTargets(features.mean((2, 3)), features.flatten(2).transpose(1, 2), (h, w))
    prefix = getattr(model, "num_prefix_tokens", 1 if getattr(model, "cls_token", None) is not None else 0)
    patches = features[:, prefix:]
    if getattr(model, "cls_token", None) is not None:
        token = features[:, 0]
    else:
        token = patches.mean(1)
    n = patches.shape[1]
    grid = infer_grid(model, n)
    return TeacherTargets(token, patches, grid)


def classifier_from_token(model: nn.Module) -> nn.Module | None:
    """A module mapping the summary token to class logits, when the teacher has a classifier."""
    if getattr(model, "num_classes", 0) <= 0:
        return None
    pool = getattr(model, "global_pool", None)
    pool_type = getattr(pool, "pool_type", pool)
    if hasattr(model, "classifier") and pool_type in ("avg", "fast", "fastavg"):
        return model.classifier  # CNN: avg-pooled feature -> Linear
    if hasattr(model, "head") and pool_type == "token" and isinstance(model.head, nn.Linear):
        return nn.Sequential(getattr(model, "fc_norm", nn.Identity()), model.head)
    return None


class Teacher(nn.Module):
    """A frozen timm model with its data config and optional token->logits classifier."""

    def __init__(self, model: nn.Module, name: str, img_size: int | None = None):
        super().__init__()
        self.model = model.eval().requires_grad_(False)
        self.name = name
        self.data_config = resolve_data_config(model, img_size)
        self.classifier = classifier_from_token(model)
        with torch.no_grad():
            features = self.model.forward_features(torch.zeros(1, *self.data_config["input_size"]))
        probe = split_feature_map(self.model, features)
        # CNN teachers run markedly faster in channels_last (depthwise convs), on CPU and GPU.
        self.channels_last = features.ndim == 4
        if self.channels_last:
            self.model.to(memory_format=torch.channels_last)
        self.dim = probe.token.shape[-1]
        self.patch_dim = probe.patches.shape[-1]
        self.grid = probe.grid

    @torch.no_grad()
    def targets(self, x: torch.Tensor) -> TeacherTargets:
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return split_feature_map(self.model, self.model.forward_features(x))

    @torch.no_grad()
    def logits(self, x: torch.Tensor) -> torch.Tensor | None:
        if self.classifier is None:
            return None
        return self.classifier(self.targets(x).token)

    def train(self, mode: bool = True) -> "Teacher":
        return super().train(False)  # the teacher stays frozen in eval mode


def create_teacher(cfg: TeacherConfig) -> Teacher:
    if cfg.name == OFFLINE_TEACHER:
        return Teacher(load_offline_efficientnet_lite0(), cfg.name, cfg.img_size)
    kwargs = {"img_size": cfg.img_size} if cfg.img_size else {}
    try:
        model = timm.create_model(cfg.name, pretrained=cfg.pretrained and not cfg.checkpoint, **kwargs)
    except RuntimeError as exc:
        if "Unknown model" in str(exc):
            raise EdgedistillError(f"unknown teacher '{cfg.name}'", "use a timm model name (timm.list_models) or efficientnet_lite0.offline") from exc
        raise
    except (OSError, ConnectionError) as exc:  # hub download failed: offline or no such tag
        raise EdgedistillError(
            f"could not fetch pretrained weights for teacher '{cfg.name}': {str(exc).splitlines()[0][:120]}",
            "connect to the internet, or set teacher.checkpoint=PATH to local weights",
        ) from exc
    if cfg.checkpoint:
        from .checkpoint import load_weights

        load_weights(model, cfg.checkpoint)
    return Teacher(model, cfg.name, cfg.img_size)
