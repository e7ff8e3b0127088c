"""Training images: timm's DeiT-style augmentation producing [0,1] tensors at one resolution.

Normalisation is left to each model (teacher and student differ in size and mean/std), so
the same augmented view feeds both, as Proteus requires.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch.utils.data import Dataset

from .sources import ImageDecoder

PRELOAD_LIMIT = 512  # small sets (the bundled photos) are decoded once and kept in memory


def training_transform(size: int):
    from timm.data import create_transform

    return create_transform(
        input_size=size,
        is_training=True,
        scale=(0.25, 1.0),
        hflip=0.5,
        auto_augment="rand-m9-mstd0.5",  # no "inc1": its posterize can ask Pillow for 0 bits
        interpolation="bicubic",
        mean=(0.0, 0.0, 0.0),
        std=(1.0, 1.0, 1.0),
        re_prob=0.0,
    )


class AugmentedImages(Dataset):
    """Map-style dataset of augmented views; unreadable files are skipped and counted."""

    def __init__(self, paths: list[Path], size: int):
        self.paths = list(paths)
        self.transform = training_transform(size)
        self.decoder = ImageDecoder()
        self._cache = None
        if len(self.paths) <= PRELOAD_LIMIT:
            decoded = [(p, self.decoder(p)) for p in self.paths]
            self._cache = [img for _, img in decoded if img is not None]
            if not self._cache:
                self.decoder.load_all([])  # raises the clear "none decoded" error

    def __len__(self) -> int:
        return len(self._cache) if self._cache is not None else len(self.paths)

    def __getitem__(self, index: int) -> torch.Tensor:
        if self._cache is not None:
            return self.transform(self._cache[index])
        for offset in range(len(self.paths)):  # fall through to the next readable file
            img = self.decoder(self.paths[(index + offset) % len(self.paths)])
            if img is not None:
                return self.transform(img)
        raise RuntimeError("no readable images left")
