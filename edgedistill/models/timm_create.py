"""timm.create_model for teachers and students, with one-line errors for what users get wrong."""

from __future__ import annotations

from contextlib import contextmanager, nullcontext

import timm
from torch import nn

from ..errors import EdgedistillError
from .hub_reach import offline_if_hub_unreachable
from .own_args import without_own_keys

NAME_HELP = {
    "teacher": "use a timm name (timm.list_models), hf-hub:ORG/REPO, open_clip:ARCH/TAG or efficientnet_lite0.offline",
    "student": "use a timm model name, e.g. vit_tiny_patch16_224",
}


def create_timm_model(role: str, name: str, pretrained: bool, img_size: int | None, model_args: dict, **extra) -> nn.Module:
    """`role` (teacher or student) names the config section in errors. img_size goes to the families
    that take it; most CNNs do not, and their data config sets the input size instead."""
    kwargs = {**without_own_keys(model_args, img_size, role), **extra}
    offline = None
    try:
        with offline_if_hub_unreachable() if pretrained else nullcontext() as offline:
            try:
                return timm.create_model(name, pretrained=pretrained, **({"img_size": img_size} if img_size else {}), **kwargs)
            except TypeError:
                if not img_size:
                    raise
                return timm.create_model(name, pretrained=pretrained, **kwargs)
    except TypeError as exc:  # model_args left over from another family, e.g. depth for a ResNet
        raise EdgedistillError(f"{role} '{name}' does not take {role}.model_args {dict(model_args)}: {_first_line(exc)}",
                               f"drop or correct {role}.model_args for this model family") from exc
    except RuntimeError as exc:
        if "Unknown model" in str(exc):
            raise EdgedistillError(f"unknown {role} '{name}'", NAME_HELP[role]) from exc
        raise _does_not_fit(role, name, img_size, model_args, "cannot be built", exc) from exc
    except (AssertionError, ValueError) as exc:  # e.g. embed_dim not divisible by num_heads, a negative depth
        raise _does_not_fit(role, name, img_size, model_args, "cannot be built", exc) from exc
    except (OSError, ConnectionError) as exc:  # hub download failed: offline or no such tag
        fix = "connect to the internet, or set teacher.checkpoint=PATH to local weights" if role == "teacher" else \
            "connect to the internet, or name the architecture (e.g. vit_small_patch16_224): students start from random weights"
        if offline:
            raise EdgedistillError(f"could not fetch {role} '{name}': {offline} does not resolve (offline?) and its weights are not in the local hub cache",
                                   f"run once where the hub is reachable (weights stay in the hub cache, HF_HUB_CACHE), or {fix.split(', or ')[1]}") from exc
        raise EdgedistillError(f"could not fetch {role} '{name}': {str(exc).splitlines()[0][:120]}", fix) from exc


@contextmanager
def runs_on_its_input(role: str, name: str, img_size: int, model_args: dict):
    """Around a model's first forward pass: its own failure there (an input smaller than a patch or a
    kernel, model_args at odds with img_size) becomes a one-line error naming the settings to change."""
    try:
        yield
    except (RuntimeError, AssertionError, ValueError) as exc:
        raise _does_not_fit(role, name, None, model_args, f"fails on its {img_size}x{img_size} input", exc) from exc


def _first_line(exc: BaseException) -> str:
    """torch's errors list every overload on the lines after the first: the first says what failed."""
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]


def _does_not_fit(role: str, name: str, img_size: int | None, model_args: dict, what: str, exc: BaseException) -> EdgedistillError:
    detail = _first_line(exc)
    settings = ", ".join([f"img_size {img_size}"] * bool(img_size) + [f"model_args {dict(model_args)}"] * bool(model_args)) or "its defaults"
    return EdgedistillError(f"{role} '{name}' {what} ({settings}): {detail}",
                            f"set {role}.img_size and {role}.model_args to values this model family takes (e.g. its defaults)")
