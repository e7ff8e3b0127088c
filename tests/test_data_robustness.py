"""Image sources as real data sets come: spawned workers, runs of bad files, symlinked and macOS-copied
folders, max_images over class-sorted folders, webdataset samples, BOM lists, tiny and float images."""

import collections
import os
import pickle

import numpy as np
import pytest
import torch
from PIL import Image

import edgedistill.data.augment as augment
from edgedistill.config import DataConfig
from edgedistill.data.augment import AugmentedViews, stand_in
from edgedistill.data.crops import deterministic_crops
from edgedistill.data.images import ImageSource
from edgedistill.data.stream import SampleStream
from tests.image_files import png_bytes as png, write_tar


def test_training_views_pickle_for_spawned_dataloader_workers():
    views = AugmentedViews(ImageSource("bundled"), 16)  # the default policy, rand-m9-mstd0.5, has Posterize ops
    copy = pickle.loads(pickle.dumps(views))
    assert torch.equal(copy[(1, 5)]["view"], views[(1, 5)]["view"])  # what a spawned worker gets (a real spawn takes seconds)


def test_a_run_of_unreadable_files_spreads_its_views_and_decodes_each_bad_file_once(tmp_path, monkeypatch):
    monkeypatch.setattr(augment, "PRELOAD_LIMIT", 0)  # a large source: decoded view by view
    for i in range(30):  # sorted before the 10 readable images
        (tmp_path / f"a{i:03d}.jpg").write_bytes(b"not a jpeg")
    for i in range(10):
        (tmp_path / f"b{i:03d}.png").write_bytes(png((10 * i, 0, 0)))
    source = ImageSource(str(tmp_path))
    loads = collections.Counter()
    real_load = source.load
    monkeypatch.setattr(source, "load", lambda i: loads.update([i]) or real_load(i))
    views = AugmentedViews(source, 8, DataConfig(auto_augment=""))
    used = collections.Counter()
    for index, seed in SampleStream(40, 8, 5, seed=0):  # one epoch
        item = views[(index, seed)]
        used[stand_in(index, seed, item["bad_run"], 40)] += 1
    assert set(used) <= set(range(30, 40)) and sum(used.values()) == 40
    assert max(used.values()) <= 10  # falling through to the next file drew b000.png 31 times of 40
    assert all(loads[i] == 1 for i in range(30))  # each bad file once, however many views fall through it


def test_an_image_missing_for_a_moment_is_read_again_later(tmp_path, monkeypatch):
    """A missing file or an I/O error may pass (a network disk, a copy in progress): unlike an undecodable
    one, it is not given up on for the rest of the process, so later views are the image's own again."""
    monkeypatch.setattr(augment, "PRELOAD_LIMIT", 0)
    for i in range(3):
        (tmp_path / f"{i}.png").write_bytes(png((60 * i, 0, 0)))
    views = AugmentedViews(ImageSource(str(tmp_path)), 8, DataConfig(auto_augment=""))
    (tmp_path / "0.png").rename(tmp_path / "away")
    assert views[(0, 7)]["bad_run"] >= 1
    (tmp_path / "away").rename(tmp_path / "0.png")
    assert views[(0, 7)]["bad_run"] == 0


def test_views_with_unreadable_images_are_a_pure_function_of_index_and_seed(tmp_path, monkeypatch):
    for i in range(4):
        (tmp_path / f"a{i}.jpg").write_bytes(b"broken")
        (tmp_path / f"b{i}.png").write_bytes(png((40 * i, 9, 0)))
    keys = list(SampleStream(8, 4, 4, seed=3))
    batches = {}
    for limit, workers in ((0, 0), (0, 2), (512, 0)):  # streamed in one process, in two workers, preloaded
        monkeypatch.setattr(augment, "PRELOAD_LIMIT", limit)
        views = AugmentedViews(ImageSource(str(tmp_path)), 8, DataConfig(auto_augment=""))
        loader = torch.utils.data.DataLoader(views, batch_size=4, sampler=keys, num_workers=workers)
        batches[limit, workers] = [(b["view"], b["bad"], b["bad_run"]) for b in loader]
    for other in ((0, 2), (512, 0)):
        for mine, theirs in zip(batches[0, 0], batches[other]):
            assert all(torch.equal(x, y) for x, y in zip(mine, theirs))


def test_folders_follow_symlinked_class_folders_once_and_skip_dotfiles(tmp_path):
    real = tmp_path / "real"
    for name in ("a", "b"):
        (real / name).mkdir(parents=True)
        for i in range(3):
            (real / name / f"{i}.png").write_bytes(png((i, 0, 0)))
    root = tmp_path / "train"
    root.mkdir()
    os.symlink(real / "a", root / "a")  # a symlinked class folder
    os.symlink(real / "b", root / "b")
    os.symlink(root, real / "b" / "loop")  # a link back up: must not loop
    (real / "a" / "._0.png").write_bytes(b"\x00\x05\x16\x07" + b"\x00" * 100)  # macOS AppleDouble file
    (root / ".thumbnails").mkdir()
    (root / ".thumbnails" / "x.png").write_bytes(png((1, 1, 1)))
    paths = [os.path.relpath(p, root) for p in ImageSource(str(root)).paths]
    assert paths == ["a/0.png", "a/1.png", "a/2.png", "b/0.png", "b/1.png", "b/2.png"]


def test_max_images_spreads_over_a_class_sorted_folder_a_list_and_shards(tmp_path):
    folder = tmp_path / "train"
    for c in range(10):
        (folder / f"n{c:02d}").mkdir(parents=True)
        for i in range(5):
            (folder / f"n{c:02d}" / f"{i}.png").write_bytes(png((c, i, 0)))
    paths = ImageSource(str(folder), max_images=10).paths
    assert [os.path.basename(os.path.dirname(p)) for p in paths] == [f"n{c:02d}" for c in range(10)]  # one per class, in order
    assert paths == ImageSource(str(folder), max_images=10).paths  # the same choice every time
    assert len({os.path.basename(p) for p in paths}) > 1  # not the first image of every stretch
    listed = sorted(str(p.relative_to(folder)) for p in folder.rglob("*.png"))
    (folder / "list.txt").write_text("\n".join(listed))
    assert ImageSource(str(folder / "list.txt"), max_images=10).paths == paths
    for s in range(3):
        write_tar(tmp_path / f"s-{s}.tar", {f"{s}_{i}.png": png((s, i, 0)) for i in range(4)})
    shards = ImageSource(str(tmp_path / "s-{0..2}.tar"), max_images=3)
    assert len(shards) == 3 and [shards.tars.relative_name(i).split(":")[0] for i in range(3)] == ["s-0.tar", "s-1.tar", "s-2.tar"]
    assert [shards.load(i).getpixel((0, 0))[0] for i in range(3)] == [0, 1, 2]


def test_a_webdataset_sample_of_several_images_is_one_image(tmp_path):
    write_tar(tmp_path / "s-0.tar", {
        "x.seg.png": png((1, 0, 0)), "x.jpg": png((2, 0, 0)), "x.cls": b"3",  # png bytes named .jpg: Pillow reads content
        "y.depth.png": png((3, 0, 0)), "y.png": png((4, 0, 0)),
        "z.webp": png((5, 0, 0)), "z.jpeg": png((6, 0, 0)),
        "sub/x.png": png((9, 0, 0)),  # another folder: another sample
        "._v.jpg": b"\x00\x05\x16\x07",  # macOS tar metadata
        # no plain image under these keys: ordinary names with dots, each an image of its own
        "IMG_20240101.120000.jpg": png((7, 0, 0)), "IMG_20240101.120001.jpg": png((8, 0, 0)), "frame.0001.png": png((9, 1, 0)),
    })
    source = ImageSource(str(tmp_path / "s-0.tar"))
    assert [source.tars.relative_name(i) for i in range(len(source))] == \
        ["s-0.tar:x.jpg", "s-0.tar:y.png", "s-0.tar:z.jpeg", "s-0.tar:sub/x.png",
         "s-0.tar:IMG_20240101.120000.jpg", "s-0.tar:IMG_20240101.120001.jpg", "s-0.tar:frame.0001.png"]


def test_an_image_list_with_a_byte_order_mark_keeps_its_first_path(tmp_path):
    for name in ("a.png", "b.png"):
        (tmp_path / name).write_bytes(png((1, 2, 3)))
    (tmp_path / "list.txt").write_bytes("\ufeffa.png\nb.png\n".encode())
    assert ImageSource(str(tmp_path / "list.txt")).paths == [str(tmp_path / "a.png"), str(tmp_path / "b.png")]
    (tmp_path / "UPPER.TXT").write_text("b.png\n")
    assert ImageSource(str(tmp_path / "UPPER.TXT")).paths == [str(tmp_path / "b.png")]


def test_crops_of_a_one_pixel_image_are_never_empty():
    from edgedistill.models.preprocess import preprocess_images

    crops = deterministic_crops([Image.new("RGB", (1, 1), (200, 10, 10))], 200, seed=1)  # about 1 in 100 rounded to 0 wide or high
    assert all(crop.size == (1, 1) for crop in crops)
    config = {"input_size": [3, 8, 8], "interpolation": "bicubic", "mean": [0.5] * 3, "std": [0.5] * 3, "crop_pct": 0.9, "crop_mode": "center"}
    assert preprocess_images(crops, config).shape == (200, 3, 8, 8)


@pytest.mark.parametrize("scale", [1.0, 200.0])
def test_float_tiffs_in_zero_to_one_are_scaled_to_bytes(tmp_path, scale):
    pixels = np.random.default_rng(0).random((6, 5)).astype(np.float32) * scale
    pixels[0, 0] = 0.5 * scale
    Image.fromarray(pixels).save(tmp_path / "f.tif")
    loaded = np.asarray(ImageSource(str(tmp_path)).load(0))
    expected = np.round(pixels * 255) if scale == 1.0 else np.asarray(Image.fromarray(pixels).convert("L"))  # 0..255 floats: as convert()
    np.testing.assert_array_equal(loaded, np.repeat(expected.astype(np.uint8)[..., None], 3, axis=2))
