"""Fashion-MNIST from the Debian package `dataset-fashion-mnist`, read from its idx files, and written as
class folders (the ImageFolder layout) for the tests that need real labelled images."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

FMNIST = Path("/usr/share/datasets/fashion-mnist")
SPLITS = {"test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
          "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz")}
installed = pytest.mark.skipif(not (FMNIST / SPLITS["test"][0]).is_file(), reason="Fashion-MNIST is not installed here")


def read_split(split: str) -> tuple[np.ndarray, np.ndarray]:
    """(images [N, 28, 28] uint8, labels [N] uint8) of the 'train' or 'test' split."""
    images, labels = SPLITS[split]
    read = lambda name, offset: np.frombuffer(gzip.open(FMNIST / name).read(), np.uint8, offset=offset)  # noqa: E731
    return read(images, 16).reshape(-1, 28, 28), read(labels, 8)


def write_class_folders(root: Path, split: str, per_class: int, skip: int = 0, classes=range(10)) -> Path:
    """Images skip..skip+per_class of each class as root/class_<k>/<i>.png."""
    images, labels = read_split(split)
    for cls in classes:
        (root / f"class_{cls}").mkdir(parents=True, exist_ok=True)
        for i, index in enumerate(np.flatnonzero(labels == cls)[skip:skip + per_class]):
            Image.fromarray(images[index]).save(root / f"class_{cls}" / f"{i:03d}.png")
    return root
