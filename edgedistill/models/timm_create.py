"""timm.create_model for teachers and students, with one-line errors for what users get wrong."""

from __future__ import annotations

import timm
from torch import nn

from ..errors import EdgedistillError

NAME_HELP = {
    "teacher": "use a timm name (timm.list_models), hf-hub:ORG/REPO, open_clip:ARCH/TAG or efficientnet_lite0.offline",
    "student": "use a timm model name, e.g. vit_tiny_patch16_224",
}


def create_timm_model(role: str, name: str, pretrained: bool, img_size: int | None, model_args: dict, **extra) -> nn.Module:
    """`role` (teacher or student) names the config section in errors. img_size goes to the families
    that take it; most CNNs do not, and their data config sets the input size instead."""
    kwargs = {**dict(model_args), **extra}
    try:
        try:
            return timm.create_model(name, pretrained=pretrained, **({"img_size": img_size} if img_size else {}), **kwargs)
        except TypeError:
            if not img_size:
                raise
            return timm.create_model(name, pretrained=pretrained, **kwargs)
    except TypeError as exc:  # model_args left over from another family, e.g. depth for a ResNet
        raise EdgedistillError(f"{role} '{name}' does not take {role}.model_args {dict(model_args)}: {exc}",
                               f"drop or correct {role}.model_args for this model family") from exc
    except RuntimeError as exc:
        if "Unknown model" in str(exc):
            raise EdgedistillError(f"unknown {role} '{name}'", NAME_HELP[role]) from exc
        raise
    except (OSError, ConnectionError) as exc:  # hub download failed: offline or no such tag
        fix = "connect to the internet, or set teacher.checkpoint=PATH to local weights" if role == "teacher" else \
            "connect to the internet, or name the architecture (e.g. vit_small_patch16_224): students start from random weights"
        raise EdgedistillError(f"could not fetch {role} '{name}': {str(exc).splitlines()[0][:120]}", fix) from exc
