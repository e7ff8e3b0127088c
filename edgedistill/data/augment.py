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

from ..config import BuildConfig, DataConfig
from .images import ImageSource

PRELOAD_LIMIT = 512  # small sets (the bundled photos) are decoded once and kept in memory
# Failures that every read of the same bytes meets again, so an image is not decoded twice for them. A
# missing file or an I/O error (a network disk's hiccup) may pass: those are read again next time, so
# one hiccup does not swap the image for a stand-in in every later view of the run.
LASTING_FAILURES = {"UnidentifiedImageError", "SyntaxError", "DecompressionBombError", "ValueError"}
FALLBACK_DRAWS = 32  # random stand-ins for an unreadable image before trying them all in order


def view_size_for(cfg: BuildConfig, teacher_data_configs: list[dict]) -> int:
    """data.view_size, else the largest model input, so no model sees an upsampled view."""
    if cfg.data.view_size:
        return cfg.data.view_size
    return max([c["input_size"][-1] for c in teacher_data_configs] + [cfg.student.img_size])


def training_transform(size: int, auto_augment: str = "rand-m9-mstd0.5", scale_min: float = 0.25):
    from timm.data import create_transform

    transform = create_transform(
        input_size=size,
        is_training=True,
        scale=(scale_min, 1.0),
        hflip=0.5,
        auto_augment=auto_augment or None,
        interpolation="bicubic",
        mean=(0.0, 0.0, 0.0),  # not a normalisation here: it sets RandAugment's fill colour (black), as before uint8 views
        std=(1.0, 1.0, 1.0),
        re_prob=0.0,
        use_prefetcher=True,  # stop at a uint8 CHW tensor; scaling happens after the copy
    )
    _keep_posterize_valid(transform)
    return transform


def _keep_posterize_valid(transform) -> None:
    """timm's increasing posterize keeps 4 - 4*level/10 bits, 0 at the top magnitude (reached with
    inc1 and magnitude noise, or AugMix), which Pillow rejects: the view, and the run, would fail
    now and then. Keeping 1 bit instead is the strongest posterize Pillow allows."""
    from timm.data.auto_augment import AugmentOp

    pending = list(getattr(transform, "transforms", [transform]))
    while pending:
        item = pending.pop()
        if isinstance(item, AugmentOp):
            if "Posterize" in item.name:
                item.aug_fn = AtLeastOneBit(item.aug_fn)
        elif isinstance(item, (list, tuple)):
            pending.extend(item)
        else:  # RandAugment / AugMixAugment keep `ops`, AutoAugment a `policy` of op lists
            pending.extend(getattr(item, "ops", ()))
            pending.extend(getattr(item, "policy", ()))


class AtLeastOneBit:
    """A posterize that keeps at least one bit. A class, not a closure: DataLoader workers started by
    spawn or forkserver (macOS, Windows, Linux from Python 3.14) get the dataset pickled."""

    def __init__(self, posterize):
        self.posterize = posterize

    def __call__(self, img, bits_to_keep, **kwargs):
        return self.posterize(img, max(int(bits_to_keep), 1), **kwargs)


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


def stand_in(index: int, seed: int, attempt: int, images: int) -> int:
    """The image a view of `index` (view seed `seed`) tries at `attempt`: itself first, then seeded random
    others, so the views of a run of unreadable files (e.g. macOS's ._name files beside every image)
    spread over the source instead of piling onto the one image after the run; after FALLBACK_DRAWS
    draws, the images in order from the last draw, so every image is tried before giving up."""
    if attempt == 0:
        return index
    draw = min(attempt, FALLBACK_DRAWS)
    return (view_seed(seed, index, draw) + attempt - draw) % images


def unreadable_indices(batch: dict, images: int) -> set[int]:
    """The unreadable image indices a collated batch reports (see AugmentedViews; a teacher cache's
    batches report the same), replayed from each view's seed; `images` is the source's image count."""
    return {stand_in(int(first), int(seed), k, images)
            for first, run, seed in zip(batch["bad"], batch["bad_run"], batch["seed"]) if first >= 0 for k in range(int(run))}


class AugmentedViews(Dataset):
    """Map-style dataset keyed by (image index, view seed) -> {"view", "index", "seed", "bad", "bad_run"}.

    An unreadable image is replaced by a stand-in (`stand_in`: a pure function of index, seed and
    attempt, so the view still is one of (index, seed)): `bad` is the requested index (-1 if readable)
    and `bad_run` how many unreadable images the view tried (0 if none), which `unreadable_indices`
    replays, so the trainer counts every unique failure even across worker processes (two fixed-size
    ints per sample, as the default collate needs).
    """

    def __init__(self, source: ImageSource, size: int, cfg: DataConfig | None = None):
        cfg = cfg or DataConfig()
        self.source = source
        self.size = size
        self.transform = training_transform(size, cfg.auto_augment, cfg.scale_min)
        self._cache = None
        self._last = (-1, None)  # (index, decoded image): the one decode that the next view of the same image reuses
        self._unreadable: set[int] = set()  # indices this process found unreadable: never decoded twice
        if len(source) <= PRELOAD_LIMIT:
            self._cache = [source.load(i) for i in range(len(source))]
            if all(img is None for img in self._cache):
                raise source.nothing_readable()

    def __len__(self) -> int:
        return len(self.source)

    @property
    def image_count(self) -> int:
        return len(self.source)  # one key index per image

    def preload_failures(self) -> set[int]:
        return {i for i, img in enumerate(self._cache or []) if img is None}

    def _load(self, index: int):
        """The decoded image. Consecutive views of one image (cache-teacher asks for its K views in a row, so
        each DataLoader batch holds runs of K keys of one image) decode it once: the transform only reads
        its input (the random resized crop makes a new image first), so every view gets the same pixels."""
        if self._cache is not None:
            return self._cache[index]
        if index in self._unreadable:
            return None
        if self._last[0] != index:
            self._last = (-1, None)  # let the previous image go before decoding the next
            self._last = (index, self.source.load(index))
            if self._last[1] is None and self.source.last_failure[1] in LASTING_FAILURES:
                self._unreadable.add(index)
        return self._last[1]

    def __getstate__(self):
        return {**self.__dict__, "_last": (-1, None)}  # a worker starts without the parent's last image

    def __getitem__(self, key) -> dict:
        index, seed = key
        n = len(self.source)
        for attempt in range(1 + FALLBACK_DRAWS + n):  # the last n attempts try every image once
            img = self._load(stand_in(index, seed, attempt, n))
            if img is not None:
                with seeded_rng(seed):
                    view = self.transform(img)
                return {"view": view, "index": index, "seed": seed, "bad": index if attempt else -1, "bad_run": attempt}
        raise self.source.nothing_readable()
