"""The quantize stage's key (evaluation_key) on every command: no decoding where calibration cannot keep apart
from the evaluation's images, no decoded images held where it must pick them, the very picks of the evalset,
and no torch import."""

import subprocess
import sys
import tarfile
import weakref

import numpy as np
import pytest
from PIL import Image

from edgedistill.config import load_config
from edgedistill.data.eval_set import evaluation_views
from edgedistill.data.images import ImageSource
from edgedistill.quantize.calibration import CalibrationRecipe, evaluation_indices
from edgedistill.quantize.stage import evaluation_key, evaluation_picks


def _grey_jpegs(folder, levels):
    """Solid JPEGs whose grey level names the image: any crop's pixel says which image it came from."""
    folder.mkdir(parents=True)
    for level in levels:
        Image.new("RGB", (40, 32), (level,) * 3).save(folder / f"img{level:03d}.jpg", quality=95)
    return folder


def _unreadable(folder, count):
    """Files decoding fails on: a JPEG cut in its scan data (fails only once decoded), garbage, an empty file."""
    noise = Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 80, 3), dtype=np.uint8))
    noise.save(folder / "whole.jpg", quality=90)
    whole = (folder / "whole.jpg").read_bytes()
    (folder / "whole.jpg").unlink()
    kinds = [whole[: int(len(whole) * 0.6)], b"not an image", b""]
    for i in range(count):
        (folder / f"bad{i:03d}.jpg").write_bytes(kinds[i % len(kinds)])


def _key(source, calibration, eval_images, samples=16):
    cfg = load_config(None, [f"data.source={source}", f"bench.eval_images={eval_images}"])
    return evaluation_key(evaluation_picks(cfg, CalibrationRecipe(str(calibration), samples, 1234)))


def _views_images(source, count) -> set[int]:
    """The grey levels of the images the evaluation views (write_evalset's) are cropped from."""
    return {round(view.getpixel((0, 0))[0]) for view in evaluation_views(str(source), count)}


def test_a_source_too_small_to_keep_apart_is_keyed_without_decoding_an_image(tmp_path, monkeypatch):
    folder = _grey_jpegs(tmp_path / "images", range(10, 110, 5))  # 20 images: 20 - 8 evaluated < 16 samples
    monkeypatch.setattr(Image, "open", lambda *a, **k: pytest.fail("no image may be opened"))
    assert _key(folder, folder, 8) == ["shares evaluation images"]
    assert _key(f"{folder}/.", folder, 8) == ["shares evaluation images"]  # the same folder, spelled otherwise


def test_the_evaluations_picks_are_the_evalsets_despite_unreadable_files(tmp_path):
    levels = range(10, 210, 5)  # 40 readable images, 12 unreadable among them: a seeded order over 52
    folder = _grey_jpegs(tmp_path / "images", levels)
    _unreadable(folder, 12)
    source = ImageSource(str(folder))
    level_of = {i: int(source.name(i).rsplit("img", 1)[-1][:3]) for i in range(len(source)) if "img" in source.name(i)}
    for count in (16, 45, 60):  # a seeded pick, and all readable ones (more asked than there are)
        picked = {level_of[i] for i in evaluation_indices(source, str(folder), count)}
        assert picked == _views_images(folder, count)
    assert len(_key(folder, folder, 16)[0]) == 16  # 52 - 16 >= 16 samples: kept apart from those 16

    shard = tmp_path / "images.tar"  # the same files as tar members
    with tarfile.open(shard, "w") as tar:
        for path in sorted(folder.iterdir()):
            tar.add(path, arcname=path.name)
    members = ImageSource(str(shard))
    level_of = {i: int(members.name(i).rsplit("img", 1)[-1][:3]) for i in range(len(members)) if "img" in members.name(i)}
    assert {level_of[i] for i in evaluation_indices(members, str(shard), 16)} == _views_images(shard, 16)


def test_a_calibration_folder_holding_the_evaluations_maps_its_picks(tmp_path):
    parent = tmp_path / "images"
    _grey_jpegs(parent / "a", range(10, 110, 5))
    _grey_jpegs(parent / "b", range(12, 112, 5))
    _unreadable(parent / "a", 6)
    source = ImageSource(str(parent))
    picked = {int(source.name(i).rsplit("img", 1)[-1][:3]) for i in evaluation_indices(source, str(parent / "a"), 8)}
    assert picked == _views_images(parent / "a", 8)


def test_picking_the_evaluations_images_holds_one_decoded_image_at_a_time(tmp_path, monkeypatch):
    folder = tmp_path / "images"
    folder.mkdir()
    for i in range(30):
        Image.new("RGB", (40, 32), (i,) * 3).save(folder / f"img{i:03d}.png")
    real_open, alive, most = Image.open, [], [0]

    def tracked_open(*args, **kwargs):
        img = real_open(*args, **kwargs)
        alive.append(weakref.ref(img))
        most[0] = max(most[0], sum(ref() is not None for ref in alive))
        return img

    monkeypatch.setattr(Image, "open", tracked_open)
    assert len(evaluation_indices(ImageSource(str(folder)), str(folder), 16)) == 16
    assert len(alive) == 16 and most[0] == 1  # each image dropped before the next is opened


def test_computing_the_quantize_key_imports_no_torch():
    code = "import sys, edgedistill.quantize.stage; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
