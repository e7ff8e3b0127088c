"""The small CNN the quantization tests share: conv, depthwise conv, pointwise conv, a 10-way classifier."""

from __future__ import annotations

import torch


def small_cnn(outlier_channel: bool = False) -> torch.nn.Sequential:
    """Seeded weights; `outlier_channel` scales the first conv's channel 0 by 50, so the activation ranges after
    it lose the other channels' detail and the depthwise conv alone in float helps the output most."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 16, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(16, 16, 3, padding=1, groups=16), torch.nn.ReLU(),
        torch.nn.Conv2d(16, 32, 1), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(32, 10),
    ).eval()
    if outlier_channel:
        with torch.no_grad():
            model[0].weight[0] *= 50
    return model
