"""Deterministic crops of real photos: many distinct evaluation/calibration views from few photos."""

from __future__ import annotations

import math

import numpy as np
from PIL import Image


def deterministic_crops(images: list[Image.Image], count: int, seed: int, scale: tuple[float, float] = (0.3, 1.0)) -> list[Image.Image]:
    """`count` random-resized-crop style views, the same for the same (images, count, seed)."""
    rng = np.random.default_rng(seed)
    crops = []
    for i in range(count):
        img = images[i % len(images)]
        width, height = img.size
        area = width * height * rng.uniform(*scale)
        ratio = math.exp(rng.uniform(math.log(3 / 4), math.log(4 / 3)))
        w = int(min(width, round(math.sqrt(area * ratio))))
        h = int(min(height, round(math.sqrt(area / ratio))))
        left = int(rng.integers(0, width - w + 1))
        top = int(rng.integers(0, height - h + 1))
        crop = img.crop((left, top, left + w, top + h))
        crops.append(crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT) if rng.random() < 0.5 else crop)
    return crops
