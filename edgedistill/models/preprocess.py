"""Model input preparation from a timm data config, in torch (training) and numpy (runtimes)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

if TYPE_CHECKING:  # torch is imported where it is used: a stage key that imports this module needs no torch
    import torch


def resolve_data_config(model: torch.nn.Module, img_size: int | None = None) -> dict:
    """timm's data config for `model`, with plain-Python values (JSON-safe)."""
    from timm.data import resolve_data_config as timm_resolve

    config = timm_resolve({}, model=model)
    if img_size:
        config["input_size"] = (3, img_size, img_size)
    return {
        "input_size": list(config["input_size"]),
        "interpolation": config.get("interpolation", "bicubic"),
        "mean": [float(v) for v in config["mean"]],
        "std": [float(v) for v in config["std"]],
        "crop_pct": float(config.get("crop_pct", 0.875)),
        "crop_mode": config.get("crop_mode", "center"),
    }


def to_model_input(images01: torch.Tensor, data_config: dict) -> torch.Tensor:
    """Resize a [0,1] batch to the model's input size and normalise it with the model's mean/std."""
    import torch
    import torch.nn.functional as F

    size = tuple(data_config["input_size"][1:])
    if tuple(images01.shape[-2:]) != size:
        mode = "bicubic" if data_config.get("interpolation") == "bicubic" else "bilinear"
        images01 = F.interpolate(images01, size=size, mode=mode, align_corners=False, antialias=True)
    mean = torch.tensor(data_config["mean"], device=images01.device, dtype=images01.dtype).view(1, 3, 1, 1)
    std = torch.tensor(data_config["std"], device=images01.device, dtype=images01.dtype).view(1, 3, 1, 1)
    return (images01 - mean) / std


def eval_transform(data_config: dict):
    """timm's evaluation transform (resize, centre crop, normalise) for a data config."""
    from timm.data import create_transform

    return create_transform(
        input_size=tuple(data_config["input_size"]),
        is_training=False,
        interpolation=data_config["interpolation"],
        mean=tuple(data_config["mean"]),
        std=tuple(data_config["std"]),
        crop_pct=data_config["crop_pct"],
        crop_mode=data_config.get("crop_mode", "center"),
    )


def preprocess_images(images: list[Image.Image], data_config: dict) -> np.ndarray:
    """A float32 NCHW batch for runtimes, preprocessed exactly as the model's data config says."""
    transform = eval_transform(data_config)
    return np.stack([transform(img.convert("RGB")).numpy() for img in images]).astype(np.float32)
