"""Calibration data: a recipe (source, sample count, seed) -> one preprocessed float32 batch.

The same array feeds ONNX Runtime's CalibrationDataReader, nncf.Dataset and a TensorRT
calibration cache. Preprocessing comes from the student's timm data config, never restated.
Images come through ImageSource (folders, .txt lists, tar shards, 'bundled'): a source with more
images than samples gives one crop each of a seeded choice spread over all of it, and only those
images are decoded. Selection is deterministic and cached by a hash of the recipe, data config and files.
"""

from __future__ import annotations

import hashlib
import glob
import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from PIL import Image

from ..artifacts import temp_file, write_failure_errno
from ..config import from_dict
from ..yaml_files import read_yaml_mapping
from ..data.crops import pick_indices, source_crops
from ..data.eval_set import EVAL_SEED
from ..data.images import ImageSource
from ..data.shards import shard_paths
from ..data.source_stamp import source_files, source_stamp
from ..errors import EdgedistillError, input_path
from ..profiles import bundled_dir, bundled_names

log = logging.getLogger(__name__)
SELECTION = "seeded-spread/1"  # in the cache key: batches cached by the first-sorted-files selection are not reused


@dataclass(frozen=True)
class CalibrationRecipe:
    source: str = "bundled"
    samples: int = 64
    seed: int = 1234


def load_recipe(name_or_path: str) -> CalibrationRecipe:
    """A bundled recipe name, a recipe YAML path, or an image source (a folder, a .txt list or .tar
    shards; 64 samples, seed 1234)."""
    if not str(name_or_path).strip():  # Path('') is the current folder, which calibrated on whatever it held
        raise EdgedistillError("quantize.calibration is empty", f"name a recipe ({', '.join(bundled_names('calibration'))}), a recipe .yaml file, "
                               "an image folder, a .txt list or .tar shards")
    path = Path(name_or_path).expanduser()
    with input_path("quantize.calibration", name_or_path):
        is_dir, is_file = path.is_dir(), path.is_file()
    if is_dir:
        return CalibrationRecipe(source=str(path))
    if name_or_path.endswith((".tar", ".txt")):
        return CalibrationRecipe(source=name_or_path)
    if not is_file:
        path = bundled_dir("calibration") / f"{name_or_path}.yaml"
        if not path.is_file():
            raise EdgedistillError(
                f"unknown calibration source '{name_or_path}'",
                f"use a recipe ({', '.join(bundled_names('calibration'))}), a recipe .yaml file, an image folder, a .txt list or .tar shards",
            )
    data = read_yaml_mapping(path, "calibration recipe", "write keys such as 'source: bundled', 'samples: 64', 'seed: 1234'")
    try:
        recipe = from_dict(CalibrationRecipe, data, where="calibration")  # LIMITS checks calibration.samples and .seed
    except EdgedistillError as exc:
        raise EdgedistillError(f"calibration recipe '{path}': {exc.cause}", exc.fix) from exc
    if recipe.seed == EVAL_SEED:  # the same source would give the very crops bench measures fidelity on
        raise EdgedistillError(f"calibration recipe '{path}' has seed {EVAL_SEED}, the evaluation views' seed, so INT8 fidelity "
                               "would be measured on the crops it calibrated on", "pick another seed (the bundled recipes use 1234)")
    if recipe.source != "bundled" and not Path(recipe.source).expanduser().is_absolute():
        # as a .txt list's lines do: a recipe file names its images from where it lies, not from the current folder;
        # escaped where the source is a shard glob, whose folder may hold '[' (shards [v2]/train-*.tar)
        folder = str(path.absolute().parent)
        folder = glob.escape(folder) if recipe.source.endswith(".tar") and glob.has_magic(recipe.source) else folder
        recipe = replace(recipe, source=str(Path(folder) / recipe.source))
    return recipe


def check_source(recipe: CalibrationRecipe, setting: str) -> None:
    """Lists the recipe's images (no decoding) so a missing or empty source is reported before the first
    stage, not after distillation and export."""
    if recipe.source == "bundled":
        return
    try:
        source_files(recipe.source)
    except EdgedistillError as exc:
        raise EdgedistillError(f"quantize.calibration '{setting}': {exc.cause}",
                               "point quantize.calibration (or its recipe file's 'source:', which, when relative, is read from "
                               "the recipe file's folder) at an existing image folder, .txt list or .tar shards, or use bundled-photos") from exc


def _fingerprint(recipe: CalibrationRecipe, data_config: dict, source: ImageSource, extra: dict | None = None) -> str:
    blob = json.dumps({"recipe": recipe.__dict__, "data_config": data_config, "files": source_stamp(source), "selection": SELECTION,
                       "extra": extra}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _cached_batch(key: str, data_config: dict, cache_dir: Path | None, views: Callable[[], list[Image.Image]]) -> np.ndarray:
    cache = Path(cache_dir) / f"calib-{key}.npy" if cache_dir else None
    if cache is not None and cache.is_file():
        try:
            return np.load(cache)
        except (OSError, ValueError, EOFError):  # truncated or empty (a full disk, a partial copy): derived data, so made again
            cache.unlink(missing_ok=True)
    from ..models.preprocess import preprocess_images  # torch: not needed for a stage key, nor for a cached batch

    batch = preprocess_images(views(), data_config)
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = temp_file(cache)  # named with this pid (two builds sharing a cache write their own); killed writers' swept
        try:
            with os.fdopen(fd, "wb") as handle:
                np.save(handle, batch)
            os.replace(tmp, cache)
        except BaseException as exc:  # a full disk, an interrupt: no half-written batch left behind
            Path(tmp).unlink(missing_ok=True)
            explained = _short_write(cache, batch.nbytes) if isinstance(exc, OSError) and exc.errno is None else None
            if explained is not None:
                raise explained from exc
            raise
    return batch


def _short_write(path: Path, size: int) -> OSError | None:
    """numpy words a failed write as "N requested and M written", with no errno: the file-size limit
    or the space left at `path` names the cause, for the CLI's one-line disk error."""
    code = write_failure_errno(path, size)
    return None if code is None else OSError(code, os.strerror(code), str(path))


def may_share_files(a: str, b: str) -> bool:
    """Whether two image sources can hold an image in common, told from their specs alone, without listing a
    folder or indexing a shard's members: folders only when one lies inside the other, shards only when they
    are the same files, the bundled photos only with themselves; a .txt list may name anything."""
    if a == b:
        return True
    if "bundled" in (a, b):
        return False

    def where(spec: str):
        try:
            shards = shard_paths(spec)
        except EdgedistillError:  # a folder mixing shards and images: its stage reports it
            return None
        if shards:
            return frozenset(os.path.realpath(p) for p in shards)
        path = Path(spec).expanduser()
        return os.path.realpath(path) if path.is_dir() else None

    found_a, found_b = where(a), where(b)
    if found_a is None or found_b is None:  # a .txt list (or a missing path): only its listing tells
        return True
    if isinstance(found_a, frozenset) or isinstance(found_b, frozenset):  # shard members are no folder's files
        return isinstance(found_a, frozenset) and isinstance(found_b, frozenset) and bool(found_a & found_b)
    return os.path.commonpath([found_a, found_b]) in (found_a, found_b)


def evaluation_indices(source: ImageSource, eval_source: str | None, eval_count: int) -> frozenset[int]:
    """The images of `source` that the evaluation views (bench's fidelity, EVAL_SEED) are cropped from:
    INT8 fidelity measured on the images calibration saw would flatter it. Only a source that shares
    files with `eval_source` costs the decoding of the evaluation's picks, one image at a time."""
    if not eval_source or not may_share_files(source.source, eval_source):
        return frozenset()
    if eval_source == source.source:  # the same source: the evaluation's picks are its indices
        return frozenset(pick_indices(source, eval_count, EVAL_SEED))
    try:
        evaluated = ImageSource(eval_source)
    except EdgedistillError:  # a build copied where its data.source is not: none of those images to keep apart here
        return frozenset()
    where = {source.identity(i): i for i in range(len(source))}
    if not any(evaluated.identity(i) in where for i in range(len(evaluated))):
        return frozenset()
    used = pick_indices(evaluated, eval_count, EVAL_SEED)
    return frozenset(where[name] for name in map(evaluated.identity, used) if name in where)


def evaluation_apart(source: ImageSource, eval_source: str | None, eval_count: int, samples: int) -> frozenset[int] | None:
    """What `samples` calibration views from `source` keep apart from: the evaluation's images
    (evaluation_indices, empty where the two have none in common), or None where `source` holds too few
    others (keeps_apart) and calibration shares them. Where `source` is the evaluation's own images and
    holds fewer than eval_count + samples, its length tells, no image decoded: the evaluation takes
    eval_count of them, or else every readable one, which leaves no readable image besides."""
    if eval_source and len(source) - eval_count < samples and _same_images(source, eval_source):
        return None
    evaluated = evaluation_indices(source, eval_source, eval_count)
    return evaluated if not evaluated or keeps_apart(source, samples, evaluated) else None


def _same_images(source: ImageSource, other: str) -> bool:
    """Whether the source spelled `other` lists the very files of `source`, in the same order."""
    if other == source.source:
        return True
    if not may_share_files(source.source, other):
        return False
    try:
        found = ImageSource(other)
    except EdgedistillError:  # a build copied where its data.source is not
        return False
    return len(found) == len(source) and all(found.identity(i) == source.identity(i) for i in range(len(source)))


def keeps_apart(source: ImageSource, count: int, evaluated: frozenset[int]) -> bool:
    """Whether `count` views can come from images the evaluation does not use: with as many images left as
    views (the rule held-out views follow), else the images are shared and the record says so."""
    return bool(evaluated) and len(source) - len(evaluated) >= count


def calibration_batch(recipe: CalibrationRecipe, data_config: dict, cache_dir: Path | None = None,
                      evaluated: frozenset[int] = frozenset(), source: ImageSource | None = None) -> np.ndarray:
    """[samples, C, H, W] float32, identical for identical inputs (and read from cache when present); crops of
    images apart from `evaluated` (evaluation_indices) when the source holds enough others."""
    source = source or ImageSource(recipe.source)
    apart = keeps_apart(source, recipe.samples, evaluated)
    key = _fingerprint(recipe, data_config, source, extra={"apart_from": sorted(evaluated)} if apart else None)
    return _cached_batch(key, data_config, cache_dir, lambda: source_crops(source, recipe.samples, recipe.seed, exclude=evaluated if apart else ())[1])


HOLDOUT_SEED = 97531  # fallback verification views: other crops than calibration (1234) and bench (20261123)


@dataclass(frozen=True)
class HeldOut:
    batch: np.ndarray
    shares_calibration_images: bool  # too few images to keep apart: other crops of the calibration images


def holdout_views(recipe: CalibrationRecipe, data_config: dict, count: int, cache_dir: Path | None = None,
                  evaluated: frozenset[int] = frozenset(), source: ImageSource | None = None) -> HeldOut:
    """Held-out views from the calibration source, never the calibrated-on crops. When the source holds
    at least samples + count images they come from images calibration did not use, and from images the
    evaluation does not use (`evaluated`) when there are enough, so the fallback does not choose its float
    layers on the images its fidelity is reported on; otherwise (the bundled photos) they are other crops
    of the same images, and a warning says so."""
    seed = HOLDOUT_SEED if recipe.seed != HOLDOUT_SEED else HOLDOUT_SEED + 1
    held = CalibrationRecipe(recipe.source, count, seed)
    source = source or ImageSource(recipe.source)
    if len(source) >= recipe.samples + count:
        calibration_apart = keeps_apart(source, recipe.samples, evaluated)
        beside = evaluated if calibration_apart and len(source) - len(evaluated) >= recipe.samples + count else frozenset()

        def views() -> list[Image.Image]:
            calibrated = pick_indices(source, recipe.samples, recipe.seed, exclude=evaluated if calibration_apart else ())
            return source_crops(source, count, seed, exclude={*calibrated, *beside})[1]

        # builds whose calibration shares no image with the evaluation keep their cached views
        apart = {"apart_from": recipe.__dict__, **({"evaluation": sorted(evaluated), "beside": sorted(beside)} if calibration_apart else {})}
        key = _fingerprint(held, data_config, source, extra=apart)
        return HeldOut(_cached_batch(key, data_config, cache_dir, views), shares_calibration_images=False)
    # recorded in the artifact (holdout_shares_calibration_images); info, not a warning, as every default build hits it
    log.info("held-out views share images with calibration: '%s' holds %d images, fewer than %d calibration + %d held-out, "
                "so INT8 fidelity is checked on other crops of the calibrated-on images; use a larger quantize.calibration source "
                "for an independent check", recipe.source, len(source), recipe.samples, count)
    return HeldOut(calibration_batch(held, data_config, cache_dir, source=source), shares_calibration_images=True)


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
