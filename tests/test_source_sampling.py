"""Evaluation and calibration views from large sources: a seeded choice spread over every class,
decoding only the images used, held-out images apart from the calibration images, and the small
bundled source still giving several crops per photo."""

from __future__ import annotations

import logging

import numpy as np
from PIL import Image

from edgedistill.data.crops import deterministic_crops
from edgedistill.data.eval_set import EVAL_SEED, evaluation_views
from edgedistill.data.images import ImageSource
from edgedistill.quantize.calibration import CalibrationRecipe, calibration_batch, holdout_views

DC = {"input_size": [3, 8, 8], "interpolation": "bilinear", "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5], "crop_pct": 1.0, "crop_mode": "center"}
CLASSES, PER_CLASS = 8, 10


def _class_folders(root):
    """ImageNet-like layout: one folder per class; an image's colour is (class, index in class, 0)."""
    for c in range(CLASSES):
        (root / f"n{c:08d}").mkdir(parents=True)
        for i in range(PER_CLASS):
            Image.new("RGB", (12, 10), (20 * c, 20 * i, 0)).save(root / f"n{c:08d}" / f"img_{i:03d}.png")
    return root


def _colours(batch: np.ndarray) -> list[tuple[int, int]]:
    """(class, index) of each view of a batch of solid-colour crops preprocessed with DC."""
    pixels = np.rint((batch[:, :2].mean(axis=(2, 3)) * 0.5 + 0.5) * 255 / 20).astype(int)
    return [tuple(p) for p in pixels]


def _count_opens(monkeypatch) -> list:
    opened = []
    real_open = Image.open

    def counting_open(fp, *args, **kwargs):
        opened.append(str(fp))
        return real_open(fp, *args, **kwargs)

    monkeypatch.setattr(Image, "open", counting_open)
    return opened


def test_folder_views_spread_over_all_classes_and_decode_only_those(tmp_path, monkeypatch):
    root = _class_folders(tmp_path / "train")
    opened = _count_opens(monkeypatch)
    views = evaluation_views(str(root), 16)
    assert len(views) == 16 and len(opened) == 16  # 16 of the 80 images decoded, never the whole folder
    classes = {view.getpixel((0, 0))[0] // 20 for view in views}
    assert len(classes) >= 5  # the first 16 sorted files would be classes 0 and 1 only
    assert len({view.getpixel((0, 0)) for view in views}) == 16  # one view per image
    monkeypatch.undo()
    again = evaluation_views(str(root), 16)
    assert [v.tobytes() for v in again] == [v.tobytes() for v in views]  # deterministic for a seed and file list
    other = evaluation_views(str(root), 16, seed=EVAL_SEED + 1)
    assert {v.getpixel((0, 0)) for v in other} != {v.getpixel((0, 0)) for v in views}


def test_calibration_samples_spread_and_holdout_uses_other_images(tmp_path, caplog):
    root = _class_folders(tmp_path / "calib")
    recipe = CalibrationRecipe(str(root), samples=16, seed=1234)
    calibrated = _colours(calibration_batch(recipe, DC))
    assert len({c for c, _ in calibrated}) >= 5 and len(set(calibrated)) == 16
    with caplog.at_level(logging.INFO):
        held = _colours(holdout_views(recipe, DC, 24, tmp_path / "cache").batch)
    assert len(held) == 24 and len(set(held)) == 24
    assert not set(held) & set(calibrated)  # 80 images hold 16 + 24: the held-out images are others
    assert "share images" not in caplog.text
    np.testing.assert_array_equal(holdout_views(recipe, DC, 24, tmp_path / "cache").batch, holdout_views(recipe, DC, 24).batch)


def test_small_source_keeps_several_crops_per_photo_and_says_holdout_shares_them(caplog):
    from edgedistill.quantize.calibration import holdout_views

    source = ImageSource("bundled")
    photos = [source.load(i) for i in range(len(source))]
    assert len(photos) < 48
    expected = deterministic_crops(photos, 48, EVAL_SEED)  # the crops the bundled photos have always given
    assert [v.tobytes() for v in evaluation_views("bundled", 48)] == [v.tobytes() for v in expected]
    with caplog.at_level(logging.INFO):
        held = holdout_views(CalibrationRecipe("bundled", 64, 1234), DC, 8)
    assert held.shares_calibration_images and held.batch.shape == (8, 3, 8, 8)
    assert "held-out views share images with calibration" in caplog.text

