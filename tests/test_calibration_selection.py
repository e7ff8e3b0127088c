"""Calibration data: deterministic selection, cache by hash, held-out views, folder sources, and the
TensorRT-calibrator export of the very same batch."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from edgedistill.data.sample_photos import bundled_photo_paths
from edgedistill.data.images import ImageSource
from edgedistill.errors import EdgedistillError
from edgedistill.quantize import calibration as calib
from edgedistill.quantize.calibration import CalibrationRecipe, OrtCalibrationReader, calibration_batch, holdout_views, load_recipe
from edgedistill.quantize.trt_calibration import read_trt_calibration, write_trt_calibration

DC = {"input_size": [3, 32, 32], "interpolation": "bilinear", "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5], "crop_pct": 1.0, "crop_mode": "center"}


def test_selection_is_deterministic_and_seed_dependent():
    recipe = CalibrationRecipe(samples=6, seed=7)
    a, b = calibration_batch(recipe, DC), calibration_batch(recipe, DC)
    assert a.shape == (6, 3, 32, 32) and a.dtype == np.float32
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, calibration_batch(CalibrationRecipe(samples=6, seed=8), DC))


def test_batch_is_cached_by_hash_of_recipe_config_and_files(tmp_path, monkeypatch):
    recipe = CalibrationRecipe(samples=4, seed=3)
    first = calibration_batch(recipe, DC, tmp_path)
    assert len(list(tmp_path.glob("calib-*.npy"))) == 1

    def no_decoding(self, index):
        raise AssertionError("a cached batch must not decode images again")

    monkeypatch.setattr(ImageSource, "load", no_decoding)
    np.testing.assert_array_equal(calibration_batch(recipe, DC, tmp_path), first)
    monkeypatch.undo()
    calibration_batch(recipe, {**DC, "mean": [0.4, 0.4, 0.4]}, tmp_path)  # another data config: another entry
    assert len(list(tmp_path.glob("calib-*.npy"))) == 2
    assert not list(tmp_path.glob("*.partial*"))


def test_holdout_views_are_not_the_calibration_views():
    recipe = CalibrationRecipe(samples=8)
    cal = calibration_batch(recipe, DC).reshape(8, -1)
    held = holdout_views(recipe, DC, 8).batch.reshape(8, -1)
    assert not any(np.allclose(h, c) for h in held for c in cal)


def test_folder_source_skips_unreadable_files(tmp_path):
    for path in bundled_photo_paths()[:3]:
        shutil.copy(path, tmp_path / path.name)
    (tmp_path / "broken.jpg").write_bytes(b"not an image")
    recipe = load_recipe(str(tmp_path))
    assert recipe.source == str(tmp_path)
    assert calibration_batch(CalibrationRecipe(str(tmp_path), 5, 1), DC).shape[0] == 5


def test_unknown_recipe_is_a_user_error():
    with pytest.raises(EdgedistillError, match="unknown calibration source"):
        load_recipe("no-such-recipe")
    assert load_recipe("bundled-photos") == CalibrationRecipe("bundled", 64, 1234)


@pytest.mark.parametrize("text, cause", [
    ("samples: 0\n", "'calibration.samples' is 0, which is out of range"),
    ("samples: 8\nseed: -1\n", "'calibration.seed' is -1, which is out of range"),
    ("samples: [unclosed\n", "is not valid YAML"),
    ("- a list\n", "must hold a mapping"),
    ("sample: 8\n", "unknown config key 'calibration.sample'"),
    ("seed: 20261123\n", "the evaluation views' seed, so INT8 fidelity would be measured on the crops it calibrated on"),
])
def test_a_bad_recipe_file_is_a_one_line_error_naming_it(tmp_path, text, cause):
    (tmp_path / "recipe.yaml").write_text(text)
    with pytest.raises(EdgedistillError) as error:
        load_recipe(str(tmp_path / "recipe.yaml"))
    assert cause in error.value.one_line() and "recipe.yaml" in error.value.one_line() and "\n" not in error.value.one_line()


def test_an_explicit_calibration_wins_over_the_targets_even_when_it_names_the_default_recipe():
    from dataclasses import replace

    from edgedistill.config import load_config
    from edgedistill.quantize.stage import calibration_recipe
    from edgedistill.targets import load_target

    target = replace(load_target("x86-cpu"), calibration="no-such-recipe")
    assert calibration_recipe(load_config(None, ["quantize.calibration=bundled-photos"]), target) == CalibrationRecipe("bundled", 64, 1234)
    with pytest.raises(EdgedistillError, match="unknown calibration source 'no-such-recipe'"):
        calibration_recipe(load_config(), target)  # unset: the target's recipe


def test_ort_reader_and_trt_export_carry_the_same_samples(tmp_path):
    recipe = CalibrationRecipe(samples=5)
    batch = calibration_batch(recipe, DC)
    fed = np.concatenate([feed["input"] for feed in OrtCalibrationReader(batch, "input")])
    np.testing.assert_array_equal(fed, batch)
    folder = write_trt_calibration(tmp_path / "trt_calibration", batch, recipe, DC)
    loaded, info = read_trt_calibration(folder)
    np.testing.assert_array_equal(loaded, batch)
    assert info["shape"] == [5, 3, 32, 32] and info["input_name"] == "input" and info["recipe"]["seed"] == 1234
    np.save(folder / "calibration.npy", batch[:4])  # a swapped batch is detected, never used silently
    with pytest.raises(ValueError, match="does not match"):
        read_trt_calibration(folder)
    assert json.loads((folder / "calibration.json").read_text())["layout"] == "NCHW"


def test_cache_fingerprint_changes_when_a_file_changes(tmp_path):
    for path in bundled_photo_paths()[:2]:
        shutil.copy(path, tmp_path / path.name)
    recipe = CalibrationRecipe(str(tmp_path), 2, 1)
    from edgedistill.data.images import ImageSource

    before = calib._fingerprint(recipe, DC, ImageSource(str(tmp_path)))
    shutil.copy(bundled_photo_paths()[3], tmp_path / "extra.png")
    assert calib._fingerprint(recipe, DC, ImageSource(str(tmp_path))) != before


def test_a_truncated_cached_batch_is_made_again(tmp_path):
    recipe = CalibrationRecipe(samples=4, seed=3)
    first = calibration_batch(recipe, DC, tmp_path)
    [cached] = tmp_path.glob("calib-*.npy")
    whole = cached.read_bytes()
    for damaged in (whole[: len(whole) // 2], b""):  # a full disk or a partial copy; an empty file raises EOFError
        cached.write_bytes(damaged)
        np.testing.assert_array_equal(calibration_batch(recipe, DC, tmp_path), first)
        np.testing.assert_array_equal(np.load(cached), first)


def _grey_images(folder, count):
    """Solid images whose grey level names the image: a view's mean pixel says which image it was cropped from."""
    from PIL import Image

    folder.mkdir()
    for i in range(count):
        Image.new("RGB", (24, 20), (10 + 5 * i,) * 3).save(folder / f"img{i:03d}.png")
    return folder


def _images_in(batch: np.ndarray) -> set[int]:
    levels = (batch.reshape(len(batch), -1).mean(axis=1) * 0.5 + 0.5) * 255  # DC's normalisation undone
    return {int(round((level - 10) / 5)) for level in levels}


def _calibration_views(tmp_path, folder, images: int, calibrate_on=None):
    from edgedistill.config import load_config
    from edgedistill.data.eval_set import evaluation_views
    from edgedistill.quantize.stage import calibration_for
    from edgedistill.targets import load_target

    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(f"source: {calibrate_on or folder}\nsamples: 16\nseed: 1234\n")
    cfg = load_config(None, [f"data.source={folder}", f"bench.eval_images={images}", f"quantize.calibration={recipe}", "quantize.holdout_images=8"])
    views = calibration_for(cfg, load_target("x86-cpu"), DC, tmp_path / "build")
    from edgedistill.models.preprocess import preprocess_images

    return views, _images_in(preprocess_images(evaluation_views(str(folder), images), DC))


def test_calibration_and_held_out_views_keep_apart_from_the_images_fidelity_is_measured_on(tmp_path):
    # 40 images: 8 evaluated, 16 calibration samples and 8 held out all fit apart
    views, evaluated = _calibration_views(tmp_path, _grey_images(tmp_path / "images", 40), 8)
    calibrated, held = _images_in(views.batch), _images_in(views.held.batch)
    assert len(evaluated) == 8 and len(calibrated) == 16 and len(held) == 8
    assert not calibrated & evaluated and not held & (calibrated | evaluated)
    assert views.record["shares_evaluation_images"] is False and views.record["holdout_shares_calibration_images"] is False


def test_too_few_images_to_keep_apart_is_recorded_and_noted_on_the_bench_row(tmp_path):
    from edgedistill.artifacts import Artifact
    from edgedistill.bench.measure import quantization_note

    views, evaluated = _calibration_views(tmp_path, _grey_images(tmp_path / "images", 20), 8)  # 20 < 16 calibration + 8 evaluated
    assert _images_in(views.batch) & evaluated and views.record["shares_evaluation_images"] is True
    row = Artifact(kind="onnx", path="q.onnx", name="onnxruntime-int8", extra={"calibration": views.record})
    assert "calibrated on images its fidelity views are cropped from" in quantization_note(row)


def test_a_calibration_source_apart_from_the_evaluations_is_used_as_before(tmp_path):
    # another folder holding copies: no file in common, the same batch (and cache entry) as with no evaluation at all
    images = _grey_images(tmp_path / "images", 20)
    copies = tmp_path / "copies"
    shutil.copytree(images, copies)
    views, _ = _calibration_views(tmp_path, images, 8, calibrate_on=copies)
    np.testing.assert_array_equal(views.batch, calibration_batch(CalibrationRecipe(str(copies), 16, 1234), DC))
    assert views.record["shares_evaluation_images"] is False
    assert len(list((tmp_path / "build" / ".cache").glob("calib-*.npy"))) == 2  # calibration and held-out views, keyed as before


def test_the_quantize_key_follows_the_evaluation_images_only_where_calibration_keeps_apart_from_them(tmp_path):
    from edgedistill.config import load_config
    from edgedistill.quantize.stage import evaluation_key, evaluation_picks

    images, other = _grey_images(tmp_path / "images", 40), _grey_images(tmp_path / "other", 4)

    def key(eval_images, source=images):
        cfg = load_config(None, [f"data.source={source}", f"bench.eval_images={eval_images}"])
        return evaluation_key(evaluation_picks(cfg, CalibrationRecipe(str(images), 16, 1234)))

    assert key(8) != key(12)  # other images to keep apart from: other calibration views
    assert key(8, source=other) == key(12, source=other) == []  # nothing in common: the key as before this rule
    assert key(30) == key(40) == ["shares evaluation images"]  # too few to keep apart either way


def test_whether_two_sources_may_share_images_is_told_without_listing_or_indexing_them(tmp_path, monkeypatch):
    from edgedistill.data import images as image_module
    from edgedistill.quantize.calibration import may_share_files

    folder = _grey_images(tmp_path / "images", 2)
    (folder / "sub").mkdir()
    shards = tmp_path / "shards"
    shards.mkdir()
    (shards / "s-0.tar").write_bytes(b"")
    _grey_images(tmp_path / "copies", 0)
    monkeypatch.setattr(image_module.ImageSource, "__init__", lambda *a, **k: pytest.fail("no source may be listed or indexed"))
    assert may_share_files("bundled", "bundled") and not may_share_files("bundled", str(folder))
    assert may_share_files(str(folder), str(folder / "sub")) and may_share_files(str(folder / "."), str(folder))
    assert not may_share_files(str(folder), str(tmp_path / "copies"))  # another folder, even of the same images
    assert not may_share_files(str(folder / "sub"), str(shards))  # shard members are no folder's files
    assert may_share_files(str(shards), str(shards / "s-0.tar")) and not may_share_files(str(shards), str(folder))
    assert may_share_files(str(folder), str(tmp_path / "list.txt"))  # a list may name anything
