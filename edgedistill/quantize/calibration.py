"""Calibration data: a recipe (source, sample count, seed) -> one preprocessed float32 batch.

The same array feeds ONNX Runtime's CalibrationDataReader, nncf.Dataset and a TensorRT
calibration cache. Preprocessing comes from the student's timm data config, never restated.
Selection is deterministic and cached by a hash of the recipe, data config and files.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from ..config import from_dict
from ..data.crops import deterministic_crops
from ..data.sources import ImageDecoder, resolve_image_paths
from ..errors import EdgedistillError
from ..models.preprocess import preprocess_images
from ..profiles import bundled_dir, bundled_names


@dataclass(frozen=True)
class CalibrationRecipe:
    source: str = "bundled"
    samples: int = 64
    seed: int = 1234


def load_recipe(name_or_path: str) -> CalibrationRecipe:
    """A bundled recipe name, a recipe YAML path, or an image folder (64 samples, seed 1234)."""
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return CalibrationRecipe(source=str(path))
    if not path.is_file():
        path = bundled_dir("calibration") / f"{name_or_path}.yaml"
        if not path.is_file():
            raise EdgedistillError(
                f"unknown calibration source '{name_or_path}'",
                f"use a recipe ({', '.join(bundled_names('calibration'))}), a recipe .yaml file, or an image folder",
            )
    data = yaml.safe_load(path.read_text()) or {}
    return from_dict(CalibrationRecipe, data, where=f"calibration {path.stem}")


def _fingerprint(recipe: CalibrationRecipe, data_config: dict, paths: list[Path]) -> str:
    files = [(str(p), p.stat().st_size, int(p.stat().st_mtime)) for p in paths]
    blob = json.dumps({"recipe": recipe.__dict__, "data_config": data_config, "files": files}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def calibration_batch(recipe: CalibrationRecipe, data_config: dict, cache_dir: Path | None = None) -> np.ndarray:
    """[samples, C, H, W] float32, identical for identical inputs (and read from cache when present)."""
    paths = resolve_image_paths(recipe.source)
    cache = Path(cache_dir) / f"calib-{_fingerprint(recipe, data_config, paths)}.npy" if cache_dir else None
    if cache is not None and cache.is_file():
        return np.load(cache)
    images = ImageDecoder().load_all(paths)
    batch = preprocess_images(deterministic_crops(images, recipe.samples, recipe.seed), data_config)
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_name(cache.stem + ".partial.npy")
        np.save(tmp, batch)
        tmp.replace(cache)
    return batch


HOLDOUT_SEED = 97531  # fallback verification views: other crops than calibration (1234) and bench (20261123)


def holdout_batch(recipe: CalibrationRecipe, data_config: dict, count: int, cache_dir: Path | None = None) -> np.ndarray:
    """Held-out views from the calibration source, never the calibrated-on crops: same images, another seed."""
    seed = HOLDOUT_SEED if recipe.seed != HOLDOUT_SEED else HOLDOUT_SEED + 1
    return calibration_batch(CalibrationRecipe(recipe.source, count, seed), data_config, cache_dir)


class OrtCalibrationReader:
    """onnxruntime.quantization.CalibrationDataReader over a calibration batch, one sample at a time."""

    def __init__(self, batch: np.ndarray, input_name: str):
        self.batch, self.input_name, self.index = batch, input_name, 0

    def __iter__(self):
        self.rewind()
        return iter(self.get_next, None)

    def __len__(self) -> int:
        return len(self.batch)

    def get_next(self):
        if self.index >= len(self.batch):
            return None
        sample = self.batch[self.index : self.index + 1]
        self.index += 1
        return {self.input_name: sample}

    def rewind(self) -> None:
        self.index = 0


def nncf_dataset(batch: np.ndarray):
    import nncf

    return nncf.Dataset([batch[i : i + 1] for i in range(len(batch))])
