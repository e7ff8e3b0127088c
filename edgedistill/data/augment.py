"""Training views: timm's DeiT-style augmentation producing uint8 tensors at one resolution.

Views leave the DataLoader as uint8 (timm's prefetcher layout): a quarter of the bytes of float
to pass between processes, pin and copy to the GPU, where `unit_interval` makes them [0,1] floats,
bit for bit what ToTensor would have given. Normalisation is left to each model (teachers and student differ in size and mean/std), so the
same augmented view feeds all of them, as Proteus requires. Each view is a pure function of
(image index, view seed): the augmentation runs under its own seeded RNG state, which makes
resume exact, lets DataLoader workers come and go, and lets the teacher cache store a seed
instead of pixels.
"""

from __future__ import annotations

import contextlib
import random

import numpy as np
import torch
from torch.utils.data import Dataset

from ..config import DataConfig
from .images import ImageSource

PRELOAD_LIMIT = 512  # small sets (the bundled photos) are decoded once and kept in memory


def training_transform(size: int, auto_augment: str = "rand-m9-mstd0.5", scale_min: float = 0.25):
    from timm.data import create_transform

    return create_transform(
        input_size=size,
        is_training=True,
        scale=(scale_min, 1.0),
        hflip=0.5,
        auto_augment=auto_augment or None,  # no "inc1": its posterize can ask Pillow for 0 bits
        interpolation="bicubic",
        mean=(0.0, 0.0, 0.0),  # not a normalisation here: it sets RandAugment's fill colour (black), as before uint8 views
        std=(1.0, 1.0, 1.0),
        re_prob=0.0,
        use_prefetcher=True,  # stop at a uint8 CHW tensor; scaling happens after the copy
    )


def unit_interval(view: torch.Tensor) -> torch.Tensor:
    """A uint8 view batch as float [0,1] (float input passes through)."""
    return view.float().div_(255) if view.dtype == torch.uint8 else view


def view_seed(base: int, *parts: int) -> int:
    """A 63-bit seed mixing `base` with positions (SplitMix64 finaliser: nearby inputs diverge)."""
    x = base & 0xFFFFFFFFFFFFFFFF
    for part in parts:
        x = (x ^ (int(part) + 0x9E3779B97F4A7C15 + (x << 6) + (x >> 2))) & 0xFFFFFFFFFFFFFFFF
        x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
        x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
        x ^= x >> 31
    return x & 0x7FFFFFFFFFFFFFFF


@contextlib.contextmanager
def seeded_rng(seed: int):
    """Run under python/numpy/torch RNGs seeded with `seed`; the global states are restored after."""
    states = random.getstate(), np.random.get_state(), torch.get_rng_state()
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.default_generator.manual_seed(seed)  # the CPU generator only: torch.manual_seed would reseed CUDA too
    try:
        yield
    finally:
        random.setstate(states[0])
        np.random.set_state(states[1])
        torch.set_rng_state(states[2])


class AugmentedViews(Dataset):
    """Map-style dataset keyed by (image index, view seed) -> {"view", "index", "seed", "bad"}.

    An unreadable image is replaced by the next readable one; `bad` carries the failing index
    (or -1) so the trainer can count unique failures even across worker processes.
    """

    def __init__(self, source: ImageSource, size: int, cfg: DataConfig | None = None):
        cfg = cfg or DataConfig()
        self.source = source
        self.size = size
        self.transform = training_transform(size, cfg.auto_augment, cfg.scale_min)
        self._cache = None
        if len(source) <= PRELOAD_LIMIT:
            self._cache = [source.load(i) for i in range(len(source))]
            if all(img is None for img in self._cache):
                from ..errors import EdgedistillError

                raise EdgedistillError(f"none of the {len(source)} images could be decoded", "check the files are valid images")

    def __len__(self) -> int:
        return len(self.source)

    def preload_failures(self) -> set[int]:
        return {i for i, img in enumerate(self._cache or []) if img is None}

    def _load(self, index: int):
        return self._cache[index] if self._cache is not None else self.source.load(index)

    def view(self, index: int, seed: int) -> tuple[torch.Tensor, int]:
        bad = -1
        for offset in range(len(self.source)):  # fall through to the next readable image
            img = self._load((index + offset) % len(self.source))
            if img is not None:
                with seeded_rng(seed):
                    return self.transform(img), bad
            bad = (index + offset) % len(self.source) if bad < 0 else bad
        raise RuntimeError("no readable images left")

    def __getitem__(self, key) -> dict:
        index, seed = key
        view, bad = self.view(index, seed)
        return {"view": view, "index": index, "seed": seed, "bad": bad}
