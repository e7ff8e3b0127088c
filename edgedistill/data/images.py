"""An indexable image source over files or tar shards, decoding robustly (bad images are counted)."""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from ..errors import EdgedistillError
from .shards import TarShardImages, shard_paths
from .sources import resolve_image_paths, take_subset, warn_unreadable

log = logging.getLogger(__name__)
# SyntaxError: Pillow's parsers on some damaged files; DecompressionBombError: a header claiming a huge image
DECODE_ERRORS = (OSError, UnidentifiedImageError, ValueError, SyntaxError, Image.DecompressionBombError)


class NoReadableImages(EdgedistillError):
    """None of a source's images could be read.

    Raised in a DataLoader worker, it reaches the main process rebuilt by torch as
    NoReadableImages(<the worker's traceback as text>); that text ends with this error's one line,
    which is parsed back, so the CLI still prints one line with its fix, not a traceback."""

    def __init__(self, cause: str, fix: str = "check the files are valid images"):
        if "\nOriginal Traceback" in cause:  # torch's ExceptionWrapper.reraise
            last = cause.rstrip().splitlines()[-1].split(": ", 1)[-1]  # "edgedistill....NoReadableImages: <one line>"
            cause, sep, rest = last.rpartition(" (fix: ")
            cause, fix = (cause, rest[:-1]) if sep and rest.endswith(")") else (last, fix)
        super().__init__(cause, fix)
        self.args = (cause, fix)  # pickles whole

    def __str__(self) -> str:
        return self.one_line()  # the traceback's last line then carries the fix too


class ImageSource:
    """`load(i)` gives an RGB image or None (unreadable); `source` names where the images come from.
    `paths`, when given, are the files already listed (an evaluation folder's, class by class);
    `subset` is how max_images chooses (sources.take_subset)."""

    def __init__(self, source: str, max_images: int | None = None, paths: list | None = None, subset: str = "spread"):
        self.source = source
        shards = shard_paths(source) if source != "bundled" and paths is None else None
        self.tars = TarShardImages(shards) if shards else None
        if paths is None and self.tars is None:
            paths = resolve_image_paths(source, max_images, subset)
        self.paths = None if self.tars else [str(p) for p in paths]
        if self.tars is not None:  # as a folder's: spread over all shards, not the first shard's images only
            self.tars.members = take_subset(self.tars.members, max_images, subset)
        self.last_failure: tuple[str, str] | None = None  # (image name, error type) of the latest unreadable image
        if self.tars is not None and len(self.tars) == 0:
            raise EdgedistillError(f"tar shards of '{source}' hold no images", "put .jpg/.png members in the shards")

    def __len__(self) -> int:
        return len(self.tars) if self.tars is not None else len(self.paths)

    def name(self, index: int) -> str:
        return self.tars.name(index) if self.tars is not None else self.paths[index]

    def identity(self, index: int) -> str:
        """The image's file (or shard and member) however its source spelled the path: two sources share an
        image when their identities meet."""
        if self.tars is not None:
            shard, _, member = self.name(index).rpartition(":")
            return f"{os.path.realpath(shard)}:{member}"
        return os.path.realpath(self.paths[index])

    def fingerprint(self, sizes: bool = True) -> str:
        """A hash of the image names in order, relative to their source (a moved folder keeps it), and
        with `sizes` their sizes: a teacher cache tells from it whether index i still holds the image it
        stored targets for (a file rewritten since, or copied only half then, changes its size). Without
        sizes it costs no stat per file: a checkpoint's sample positions depend on the names alone."""
        if self.tars is not None:
            names = [self.tars.relative_name(i) + (f" {self.tars.members[i][2]}" if sizes else "") for i in range(len(self))]
        else:
            root = os.path.commonpath([os.path.dirname(os.path.abspath(p)) for p in self.paths])
            names = [os.path.relpath(os.path.abspath(p), root) for p in self.paths]
            if sizes:  # the size only: a copied folder has new mtimes
                names = [f"{name} {stat and stat[0]}" for name, stat in zip(names, map(_size_and_mtime, self.paths))]
        return hashlib.sha256("\n".join(names).encode()).hexdigest()[:16]

    def load(self, index: int, draft: bool = False) -> Image.Image | None:
        """The decoded RGB image, None (warned) when unreadable. `draft` decodes a JPEG at 1/8 scale: half the
        cost and still all of its entropy-coded data, so a damaged file fails as in a full decode."""
        try:
            with (self.tars.open(index) if self.tars is not None else Image.open(Path(self.paths[index]))) as img:
                if draft:
                    img.draft(img.mode, (1, 1))  # a no-op for other formats: decoded whole
                return as_rgb(img)
        except DECODE_ERRORS as exc:
            self.last_failure = (self.name(index), type(exc).__name__)
            warn_unreadable(self.name(index), exc)
            return None

    def nothing_readable(self, count: int | None = None) -> NoReadableImages:
        """The error for `count` (default: all) images of this source, every one unreadable."""
        name, error = self.last_failure or ("", "")
        example = f" (e.g. {name}: {error})" if name else ""
        fix = "check the files exist and are valid images" if error == "FileNotFoundError" else "check the files are valid images"
        return NoReadableImages(f"none of the {len(self) if count is None else count} images of '{self.source}' could be decoded{example}", fix)


def as_rgb(img: Image.Image) -> Image.Image:
    """The decoded RGB image. An RGB file is only loaded: convert() would copy the whole decoded image
    once more for every training view, though its pixels are already what the view needs."""
    if img.mode == "RGB":
        img.load()  # decode now, while the file is open
        return img
    # 16-bit greyscale: PNG and PGM give mode I only at 16 bits (Pillow scales a PGM's maxval to 65535), so a dark
    # one, all under 256, is dark too; other formats' I by its values
    if img.mode.startswith("I;16") or (img.mode == "I" and (img.format in ("PNG", "PPM") or img.getextrema()[1] > 255)):
        # convert() would clip 0..65535 to 0..255 (a white image); scale it to 8 bits instead
        return Image.fromarray((np.asarray(img, dtype=np.float32) / 257.0).round().astype(np.uint8)).convert("RGB")
    if img.mode == "F" and img.getextrema()[1] <= 1.0:  # 32-bit float in 0..1: convert() would keep 0..1 of 0..255, black
        pixels = np.nan_to_num(np.asarray(img, dtype=np.float32)) * 255
        return Image.fromarray(np.clip(pixels, 0, 255).round().astype(np.uint8)).convert("RGB")
    return img.convert("RGB")


def _size_and_mtime(path) -> tuple[int, int] | None:
    try:
        stat = os.stat(path)
    except OSError:
        return None  # missing: the stage reports it
    return stat.st_size, stat.st_mtime_ns
