"""Deterministic crops of real photos: many distinct evaluation/calibration views from few photos,
or one view per image from a seeded choice spread over a large source."""

from __future__ import annotations

import math
from collections.abc import Collection, Iterator

import numpy as np
from PIL import Image

from .images import ImageSource

_ORDER_STREAM = 0x0C40  # keeps the image order's random stream apart from the crop parameters'


def seeded_order(n: int, seed: int) -> np.ndarray:
    """A seeded permutation of range(n): the same for the same (n, seed), spread over the whole range
    (a class-sorted folder's first indices are one class)."""
    return np.random.default_rng([seed, _ORDER_STREAM]).permutation(n)


def deterministic_crops(images: list[Image.Image], count: int, seed: int, scale: tuple[float, float] = (0.3, 1.0)) -> list[Image.Image]:
    """`count` random-resized-crop style views, the same for the same (images, count, seed); with fewer
    images than views each image gives several (pick_images chooses which images of a large source)."""
    rng = np.random.default_rng(seed)
    crops = []
    for i in range(count):
        img = images[i % len(images)]
        width, height = img.size
        area = width * height * rng.uniform(*scale)
        ratio = math.exp(rng.uniform(math.log(3 / 4), math.log(4 / 3)))
        w = max(1, int(min(width, round(math.sqrt(area * ratio)))))  # at least 1: a 0-wide crop of a tiny image fails to resize
        h = max(1, int(min(height, round(math.sqrt(area / ratio)))))
        left = int(rng.integers(0, width - w + 1))
        top = int(rng.integers(0, height - h + 1))
        crop = img.crop((left, top, left + w, top + h))
        crops.append(crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT) if rng.random() < 0.5 else crop)
    return crops


def _candidates(source: ImageSource, count: int, seed: int, exclude: Collection[int]) -> tuple[Iterator[int], int]:
    """(the indices to try in order, how many images are not excluded) for pick_images and pick_indices."""
    exclude = set(exclude)
    usable = len(source) - sum(0 <= i < len(source) for i in exclude)
    if count >= usable:
        return (i for i in range(len(source)) if i not in exclude), usable
    return (int(i) for i in seeded_order(len(source), seed) if int(i) not in exclude), usable


def pick_images(source: ImageSource, count: int, seed: int, exclude: Collection[int] = ()) -> tuple[list[int], list[Image.Image]]:
    """(indices, decoded images) that `count` views are cropped from, skipping unreadable images and `exclude`.

    A source with no more usable images than `count` gives all of them, in order (several crops each);
    a larger one gives the first `count` readable images of a seeded order over the whole source.
    Only these images are decoded, never the whole source."""
    candidates, usable = _candidates(source, count, seed, exclude)
    indices, images = [], []
    for index in candidates:
        image = source.load(index)
        if image is not None:
            indices.append(index)
            images.append(image)
            if len(images) == count:
                break
    if not images:
        raise source.nothing_readable(usable)
    return indices, images


def pick_indices(source: ImageSource, count: int, seed: int, exclude: Collection[int] = ()) -> list[int]:
    """The indices pick_images gives, keeping no decoded image: which images views are cropped from, where
    only that is needed (the evaluation's, for calibration to keep apart from: 48 phone photos held at once
    are gigabytes). Unreadable images are skipped as there, so the picks are the same."""
    candidates, usable = _candidates(source, count, seed, exclude)
    indices = []
    for index in candidates:
        if _readable(source, index):
            indices.append(index)
            if len(indices) == count:
                break
    if not indices:
        raise source.nothing_readable(usable)
    return indices


def _readable(source: ImageSource, index: int) -> bool:
    """Whether source.load(index) gives an image, told from a draft decode (a JPEG at 1/8 scale)."""
    return source.load(index, draft=True) is not None


def source_crops(source: ImageSource, count: int, seed: int, exclude: Collection[int] = ()) -> tuple[list[int], list[Image.Image]]:
    """(indices of the images used, `count` deterministic crops of them) from an image source."""
    indices, images = pick_images(source, count, seed, exclude)
    return indices, deterministic_crops(images, count, seed)
