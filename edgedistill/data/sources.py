"""Resolve an image source to file paths and decode images robustly (bad files are counted, not fatal)."""

from __future__ import annotations

import logging
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from ..errors import EdgedistillError
from .sample_photos import bundled_photo_paths

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".ppm", ".pgm"}
log = logging.getLogger(__name__)


def resolve_image_paths(source: str, max_images: int | None = None) -> list[Path]:
    """'bundled', a folder (searched recursively) or a .txt file listing one path per line."""
    if source == "bundled":
        paths = bundled_photo_paths()
    else:
        root = Path(source).expanduser()
        if root.is_dir():
            paths = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        elif root.is_file() and root.suffix == ".txt":
            lines = [line.strip() for line in root.read_text().splitlines() if line.strip() and not line.startswith("#")]
            paths = [(root.parent / line) if not Path(line).is_absolute() else Path(line) for line in lines]
        else:
            raise EdgedistillError(f"image source '{source}' is neither a folder nor a .txt file list", "pass data.source=bundled, a folder of images, or a .txt list")
    if not paths:
        raise EdgedistillError(f"image source '{source}' holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})", "add images or point at another folder")
    return paths[:max_images] if max_images else paths


class ImageDecoder:
    """Open images as RGB; unreadable files are skipped and counted, never fatal."""

    def __init__(self):
        self.failures: dict[str, str] = {}

    def __call__(self, path: Path) -> Image.Image | None:
        try:
            with Image.open(path) as img:
                return img.convert("RGB")
        except (OSError, UnidentifiedImageError, ValueError) as exc:
            self.failures[str(path)] = type(exc).__name__
            log.warning("skipping unreadable image %s (%s)", path, type(exc).__name__)
            return None
