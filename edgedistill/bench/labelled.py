"""A labelled evaluation folder (ImageFolder layout: one subfolder per class), preprocessed without torch.

Bench runs on devices from a copied build folder, where torch may be absent, so timm's
evaluation transform (resize the short side to size / crop_pct, centre crop, normalise) is
restated here with PIL and numpy; a test checks it matches timm's output.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from PIL import Image

from ..data.images import ImageSource
from ..data.sources import IMAGE_SUFFIXES, walk_files
from ..errors import EdgedistillError

_RESAMPLE = {"bicubic": Image.BICUBIC, "bilinear": Image.BILINEAR, "nearest": Image.NEAREST, "lanczos": Image.LANCZOS}


def class_folders(root: Path) -> list[str]:
    """The class subfolders of a labelled folder (the ImageFolder layout), sorted; hidden ones are no class."""
    return sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))


def list_labelled(root: str | Path, max_images: int | None = None, setting: str = "bench.eval_dir") -> tuple[list[Path], np.ndarray, list[str]]:
    """(image paths, integer labels, class names); at most `max_images` in all, spread evenly over classes.
    `setting` names the folder in errors (bench.eval_dir, or a command's argument)."""
    root = Path(root).expanduser()
    if not root.is_dir():
        kept = "; bench flags are kept in the build, so on another machine clear it with --set bench.eval_dir=null" if setting == "bench.eval_dir" else ""
        raise EdgedistillError(f"{setting} '{root}' is not a folder", f"pass a folder with one subfolder of images per class{kept}")
    classes = class_folders(root)
    # walk_files follows symlinked subfolders (rglob does not before Python 3.13) and skips ._x.jpg files
    per_class = {c: sorted(p for p in walk_files(root / c) if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()) for c in classes}
    per_class = {c: ps for c, ps in per_class.items() if ps}
    if len(per_class) < 2 or min(len(ps) for ps in per_class.values()) < 2:
        raise EdgedistillError(f"{setting} '{root}' needs at least 2 class subfolders with 2 or more images each",
                               "lay it out as <folder>/<class>/<image>.png (the ImageFolder layout)")
    names = sorted(per_class)
    cap = None
    if max_images:
        # At most max_images in all, >= 2 per class (k-fold needs them): with more classes than
        # max_images // 2, classes evenly spaced in name order are kept, the same ones every run.
        keep = min(len(names), max_images // 2)
        if keep < 2:
            raise EdgedistillError(f"bench.eval_max_images={max_images} leaves room for fewer than 2 classes of 2 images",
                                   "set bench.eval_max_images to 4 or more")
        names = [names[round(i * (len(names) - 1) / (keep - 1))] for i in range(keep)]
        cap = max_images // keep
    paths, labels = [], []
    for index, name in enumerate(names):
        chosen = per_class[name][:cap]
        paths += chosen
        labels += [index] * len(chosen)
    return paths, np.asarray(labels, dtype=np.int64), names


def preprocess(img: Image.Image, data_config: dict) -> np.ndarray:
    """timm's eval transform (crop_mode 'center' or 'squash') for one image -> float32 CHW."""
    height, width = data_config["input_size"][1:]
    resample = _RESAMPLE.get(data_config.get("interpolation", "bicubic"), Image.BICUBIC)
    crop_pct = float(data_config.get("crop_pct", 0.875))
    img = img.convert("RGB")
    if data_config.get("crop_mode", "center") == "squash":
        img = img.resize((math.floor(width / crop_pct), math.floor(height / crop_pct)), resample)
    else:
        short = math.floor(height / crop_pct) if height == width else None
        if short is None:  # non-square: resize both sides, as timm does
            img = img.resize((math.floor(width / crop_pct), math.floor(height / crop_pct)), resample)
        else:
            w, h = img.size
            size = (short, int(short * h / w)) if w <= h else (int(short * w / h), short)
            img = img.resize(size, resample)
    w, h = img.size
    top, left = int(round((h - height) / 2.0)), int(round((w - width) / 2.0))
    img = img.crop((left, top, left + width, top + height))
    arr = np.asarray(img, dtype=np.float32).transpose(2, 0, 1) / 255.0
    mean = np.asarray(data_config["mean"], dtype=np.float32).reshape(3, 1, 1)
    std = np.asarray(data_config["std"], dtype=np.float32).reshape(3, 1, 1)
    return ((arr - mean) / std).astype(np.float32)


def load_labelled(root: str | Path, data_config: dict, max_images: int | None = None) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(NCHW float32 inputs, labels, class names); unreadable images are skipped."""
    paths, labels, classes = list_labelled(root, max_images)
    images = ImageSource(str(root), paths=paths)
    arrays, kept = [], []
    for index, label in enumerate(labels):
        img = images.load(index)
        if img is not None:
            arrays.append(preprocess(img, data_config))
            kept.append(label)
    if not arrays:
        raise EdgedistillError(f"no image in bench.eval_dir '{root}' could be decoded", "check the files are valid images")
    return np.stack(arrays), np.asarray(kept, dtype=np.int64), classes
