"""Frozen teachers and the targets they provide: a summary token and spatial (patch) tokens.

Any timm model works (a hub tag such as vit_large_patch14_dinov2.lvd142m, or local weights):
the summary is the model's own pooled pre-logits (CLS for ViTs, attention/avg pool otherwise)
and the patch tokens are its final, normed token map without prefix tokens (CLS, registers;
models that norm only the pooled summary have their patch tokens put through that norm too);
CNNs give their last feature map as tokens. open_clip image towers come through the [vl] extra.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..config import OFFLINE_TEACHER, TeacherConfig, teacher_list
from ..errors import EdgedistillError
from .offline_teacher import load_offline_efficientnet_lite0
from .open_clip_teacher import PREFIX as OPEN_CLIP_PREFIX, create_open_clip_visual
from .preprocess import resolve_data_config
from .timm_create import create_timm_model, runs_on_its_input
from .tokens import patch_tokens


@dataclass
class TeacherTargets:
    token: torch.Tensor  # [B, D] summary (CLS token or pooled feature)
    patches: torch.Tensor  # [B, H*W, D'] spatial tokens on the teacher's grid
    grid: tuple[int, int]  # (H, W) of the patch tokens


def split_feature_map(model: nn.Module, features: torch.Tensor) -> TeacherTargets:
    """Turn forward_features output (NCHW map or NLC tokens) into token + patch targets."""
    patches, grid = patch_tokens(model, features)  # refuses outputs without a spatial map, with a fix
    token = model.forward_head(features, pre_logits=True) if hasattr(model, "forward_head") else None
    if token is None:  # a CNN or hierarchical map pools; a token map gives its class token when it has one
        token = features[:, 0] if features.ndim == 3 and getattr(model, "cls_token", None) is not None else patches.mean(1)
    norm = pooled_only_norm(model)
    if norm is not None and features.ndim == 3:  # Proteus regresses the final, normed tokens
        patches = norm(patches)
    return TeacherTargets(token, patches, grid)


def pooled_only_norm(model: nn.Module) -> nn.Module | None:
    """The final norm of a model that applies it to its pooled summary only (timm's fc_norm, with
    `norm` an Identity: BEiT, EVA, EVA02 and avg-pool ViTs), whose token map is therefore un-normed."""
    fc_norm = getattr(model, "fc_norm", None)
    if not isinstance(fc_norm, nn.Module) or isinstance(fc_norm, nn.Identity):
        return None
    return fc_norm if isinstance(getattr(model, "norm", nn.Identity()), nn.Identity) else None


def classifier_from_token(model: nn.Module, model_args: dict | None = None) -> nn.Module | None:
    """The module mapping the summary (pre-logits) to class logits, when the teacher has one. A CLIP
    or SigLIP tower's head (num_classes 512, 768, ...) is its image-text projection, no classes to
    agree on, unless it is a fine-tuned classifier (an ImageNet label count) or the user sized it."""
    if getattr(model, "num_classes", 0) <= 0 or not hasattr(model, "get_classifier"):
        return None
    if "num_classes" not in (model_args or {}) and image_text_projection(model):
        return None
    head = model.get_classifier()
    return head if isinstance(head, nn.Linear) else None


def image_text_projection(model: nn.Module) -> bool:
    from timm.data import infer_imagenet_subset

    cfg = getattr(model, "pretrained_cfg", None) or {}
    named = f"{cfg.get('architecture', '')}.{cfg.get('tag', '')}".lower()
    return ("clip" in named or "siglip" in named) and infer_imagenet_subset(model) is None


class Teacher(nn.Module):
    """A frozen model with its data config, target dims/grid and optional token->logits classifier."""

    def __init__(self, model: nn.Module, name: str, img_size: int | None = None, weight: float = 1.0, model_args: dict | None = None):
        super().__init__()
        self.model = model.eval().requires_grad_(False)
        self.name = name
        self.weight = weight
        self.data_config = model.data_config() if hasattr(model, "forward_targets") else resolve_data_config(model, img_size)
        self.classifier = classifier_from_token(model, model_args)
        self._is_cnn = False
        with torch.no_grad(), runs_on_its_input("teacher", name, self.data_config["input_size"][-1], model_args or {}):
            probe = self._targets(torch.zeros(1, *self.data_config["input_size"]))
        # CNN teachers run markedly faster in channels_last (depthwise convs), on CPU and GPU.
        self.channels_last = self._is_cnn
        if self.channels_last:
            self.model.to(memory_format=torch.channels_last)
        self.dim = probe.token.shape[-1]
        self.patch_dim = probe.patches.shape[-1]
        self.grid = tuple(probe.grid)

    def _targets(self, x: torch.Tensor) -> TeacherTargets:
        if hasattr(self.model, "forward_targets"):
            return TeacherTargets(*self.model.forward_targets(x))
        features = self.model.forward_features(x)
        targets = split_feature_map(self.model, features)  # first: it refuses outputs that are no map
        self._is_cnn = features.ndim == 4
        return targets

    @torch.no_grad()
    def targets(self, x: torch.Tensor) -> TeacherTargets:
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return self._targets(x)

    @torch.no_grad()
    def logits(self, x: torch.Tensor) -> torch.Tensor | None:
        return None if self.classifier is None else self.classifier(self.targets(x).token)

    def train(self, mode: bool = True) -> "Teacher":
        return super().train(False)  # the teacher stays frozen in eval mode


def create_timm_teacher(cfg: TeacherConfig) -> nn.Module:
    model = create_timm_model("teacher", cfg.name, cfg.pretrained and not cfg.checkpoint, cfg.img_size, cfg.model_args)
    if cfg.checkpoint:
        from .checkpoint import load_weights

        load_weights(model, cfg.checkpoint)
    return model


def create_teacher(cfg: TeacherConfig) -> Teacher:
    if cfg.name == OFFLINE_TEACHER:
        if cfg.checkpoint or cfg.model_args or not cfg.pretrained:  # it is one fixed set of weights: say so, never ignore
            raise EdgedistillError(f"the offline teacher '{OFFLINE_TEACHER}' takes no checkpoint, model_args or pretrained=false",
                                   "set teacher.name to a timm model (e.g. tf_efficientnet_lite0) to use those, or drop them")
        model = load_offline_efficientnet_lite0()
    elif cfg.name.startswith(OPEN_CLIP_PREFIX):
        check_open_clip_settings(cfg)
        model = create_open_clip_visual(cfg.name, cfg.pretrained, cfg.checkpoint)
    else:
        model = create_timm_teacher(cfg)
    # a teacher left at its default size (img_size null) may be built at another through model_args: it runs at that
    size = cfg.img_size or cfg.model_args.get("img_size")
    return Teacher(model, cfg.name, size, cfg.weight, dict(cfg.model_args))


def check_open_clip_settings(cfg: TeacherConfig) -> None:
    """open_clip builds its tower at its own size and depth: img_size and model_args are refused, never ignored."""
    if cfg.img_size or cfg.model_args:
        raise EdgedistillError(f"open_clip teacher '{cfg.name}' takes no img_size or model_args (it runs at its own size)",
                               "drop teacher.img_size and teacher.model_args, or use a timm CLIP model (e.g. vit_base_patch16_clip_224.openai)")


TEACHER_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def check_dtype_runs(c: TeacherConfig, bf16_autocast: bool) -> None:
    if c.dtype != "fp32" and not bf16_autocast:  # bf16 weights against fp32 activations would fail in the first layer
        raise EdgedistillError(f"teacher '{c.name}' has dtype {c.dtype}, which needs bf16 autocast",
                               "set distill.amp=bf16 (auto uses it on CUDA), or teacher.dtype=fp32")


def hold_for_distillation(teachers: list[Teacher], configs: list[TeacherConfig], bf16_autocast: bool) -> None:
    """Cast each teacher to its configured dtype for distillation or caching. The classifier stays
    fp32: it is saved beside the student, and targets never pass through it."""
    for teacher, c in zip(teachers, configs):  # each dtype was checked against config.CHOICES when read
        if c.dtype == "fp32":
            continue
        check_dtype_runs(c, bf16_autocast)
        teacher.to(TEACHER_DTYPES[c.dtype])
        if teacher.classifier is not None:
            teacher.classifier.float()


def teacher_configs(cfg: TeacherConfig) -> list[TeacherConfig]:
    """The primary teacher followed by `cfg.extra` (each a mapping of TeacherConfig keys)."""
    return teacher_list(cfg)


def create_teachers(cfg: TeacherConfig) -> list[Teacher]:
    """All teachers; randomly initialised ones (pretrained=False) come out the same every time,
    so a teacher cache, an online run and the evaluation set agree, without touching the global RNG."""
    return [_create_seeded(c, i) for i, c in enumerate(teacher_configs(cfg))]


def create_primary_teacher(cfg: TeacherConfig) -> Teacher:
    """The first teacher alone, the same model create_teachers gives first."""
    return _create_seeded(cfg, 0)


def teacher_seed(index: int) -> int:
    """The seed teacher `index` is built under: random weights are the same wherever it is built (embed-text too)."""
    return 1_000_003 * (index + 1)


def _create_seeded(cfg: TeacherConfig, index: int) -> Teacher:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(teacher_seed(index))
        return create_teacher(cfg)
