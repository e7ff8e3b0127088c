"""Resolve an image source to file paths; report unreadable images once (images.py decodes them)."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from ..errors import EdgedistillError
from .sample_photos import bundled_photo_paths

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".ppm", ".pgm"}
SUBSET_SEED = 0x5EED  # data.max_images' choice: fixed, so a cache and the run it trains choose the same images
log = logging.getLogger(__name__)


def resolve_image_paths(source: str, max_images: int | None = None, subset: str = "spread") -> list[Path]:
    """'bundled', a folder (searched recursively) or a .txt file listing one path per line (relative
    paths resolve against the list's folder, not the current one)."""
    if source == "bundled":
        paths = bundled_photo_paths()
    else:
        root = Path(source).expanduser()
        if root.is_dir():
            paths = sorted(p for p in walk_files(root) if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        elif root.is_file() and root.suffix.lower() == ".txt":
            try:  # utf-8-sig: Windows editors start a UTF-8 file with a byte order mark
                lines = [line.strip() for line in root.read_text(encoding="utf-8-sig").splitlines()]
            except UnicodeDecodeError as exc:
                raise EdgedistillError(f"image list '{source}' is not UTF-8 text ({exc.reason} at byte {exc.start})",
                                       "write the list as UTF-8 text, one image path per line") from exc
            lines = [line for line in lines if line and not line.startswith("#")]
            paths = [root.parent / Path(line).expanduser() for line in lines]  # an absolute (or ~) path replaces the folder
            if not paths:
                raise EdgedistillError(f"image list '{source}' lists no files", "write one image path per line")
            paths = take_subset(paths, max_images, subset)
            if not any(p.is_file() for p in paths):  # one stat when the first file is there
                raise _listed_files_missing(source, root, lines[0], paths)
        elif not root.exists():
            if root.suffix.lower() == ".txt":
                raise EdgedistillError(f"image list '{source}' does not exist", "check the path, or pass an existing .txt list with one image path per line")
            fix = ("pass the folder that holds the images: a glob names .tar shards only" if any(c in source for c in "*?[")
                   else "check the path, or pass data.source=bundled, a folder of images, a .txt list or .tar shards")
            raise EdgedistillError(f"image source '{source}' does not exist", fix)
        else:
            raise EdgedistillError(f"image source '{source}' is neither a folder nor a .txt file list",
                                   "pass data.source=bundled, a folder of images, a .txt list or .tar shards")
    if not paths:
        raise EdgedistillError(f"image source '{source}' holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})", "add images or point at another folder")
    return take_subset(paths, max_images, subset)


def take_subset(items: list, count: int | None, subset: str = "spread") -> list:
    """data.max_images of `items`: spread over them, or (subset="first", as versions before the spread
    took them, which their teacher caches still name) the first `count`."""
    return spread_subset(items, count) if subset == "spread" else items[:count] if count else items


def spread_subset(items: list, count: int | None) -> list:
    """`count` of `items` spread evenly over them, in their order: one seeded pick in each of `count`
    equal stretches (the first N of a class-sorted folder would be its first classes only)."""
    if not count or count >= len(items):
        return items
    edges = np.arange(count + 1) * len(items) // count
    picks = edges[:-1] + (np.random.default_rng(SUBSET_SEED).random(count) * np.diff(edges)).astype(np.int64)
    return [items[i] for i in picks]


def walk_files(root: Path):
    """The files under `root` (and broken links: stat the ones kept), following symlinked folders
    (Path.rglob skips them before Python 3.13) but each real folder once, by the first path in sorted
    order (a link to a parent would loop). Dotfiles and dot-folders are left out: macOS's ._name
    AppleDouble files sit beside every image copied from a Mac, and are no images."""
    seen = set()
    for folder, dirs, files in os.walk(root, followlinks=True):
        real = os.path.realpath(folder)
        if real in seen:
            dirs[:] = []
            continue
        seen.add(real)
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))  # sorted: the same alias of a folder linked twice wins
        yield from (Path(folder, name) for name in files if not name.startswith("."))


def _listed_files_missing(source: str, root: Path, first_line: str, paths: list[Path]) -> EdgedistillError:
    cause = f"none of the {len(paths)} files listed in '{source}' exist (e.g. '{paths[0]}')"
    folder = root.parent.resolve()
    if not Path(first_line).is_absolute() and Path(first_line).exists():  # written relative to the current folder
        return EdgedistillError(cause, f"relative paths resolve against the list's folder {folder}, not the current one: write them relative to it, or absolute")
    return EdgedistillError(cause, f"correct the paths in the list; relative ones resolve against its folder, {folder}")


_warned: set[str] = set()  # files already reported unreadable by this process


def warn_unreadable(name: str, exc: BaseException) -> None:
    """Log an unreadable image once per file and process: a view falls through it again and again."""
    if name not in _warned:
        _warned.add(name)
        log.warning("skipping unreadable image %s (%s)", name, type(exc).__name__)

