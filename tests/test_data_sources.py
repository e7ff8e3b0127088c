"""Image sources (folders, .txt lists, tar shards), robust decoding, seeded views and the sample stream."""

import io
import random
import tarfile

import numpy as np
import pytest
import torch
from PIL import Image

from edgedistill.config import DataConfig
from edgedistill.data.augment import AugmentedViews
from edgedistill.data.images import ImageSource
from edgedistill.data.shards import expand_braces
from edgedistill.data.stream import SampleStream
from edgedistill.errors import EdgedistillError


def _png(color) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (20, 16), color).save(buffer, format="PNG")
    return buffer.getvalue()


def _write_tar(path, members: dict) -> None:
    with tarfile.open(path, "w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def test_tar_shards_with_a_broken_member_are_read_and_counted(tmp_path):
    _write_tar(tmp_path / "train-000.tar", {"a.png": _png((255, 0, 0)), "a.cls": b"3", "b.jpg": b"not a jpeg"})
    _write_tar(tmp_path / "train-001.tar", {"c.png": _png((0, 0, 255))})
    source = ImageSource(str(tmp_path / "train-{000..001}.tar"))
    assert len(source) == 3  # .cls is metadata, not an image
    assert source.load(0).getpixel((0, 0)) == (255, 0, 0) and source.load(2).getpixel((0, 0)) == (0, 0, 255)
    assert source.load(1) is None  # skipped, never fatal
    views = AugmentedViews(source, 16, DataConfig(auto_augment=""))
    assert views.preload_failures() == {1}
    item = views[(1, 7)]  # the broken image falls through to the next readable one and is reported
    assert item["bad"] == 1 and item["view"].shape == (3, 16, 16)
    assert len(ImageSource(str(tmp_path))) == 3  # a folder of shards works too
    with pytest.raises(EdgedistillError, match="does not exist"):
        ImageSource(str(tmp_path / "missing-{0..1}.tar"))
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "preview.png").write_bytes(_png((0, 255, 0)))  # one stray image beside the shards
    with pytest.raises(EdgedistillError, match="both .tar shards and image files") as error:
        ImageSource(str(tmp_path))
    assert "*.tar" in error.value.fix
    assert len(ImageSource(str(tmp_path / "*.tar"))) == 3  # the fix it names works


def test_txt_file_list_and_brace_expansion(tmp_path):
    (tmp_path / "x.png").write_bytes(_png((1, 2, 3)))
    (tmp_path / "list.txt").write_text("# photos\nx.png\n")
    assert ImageSource(str(tmp_path / "list.txt")).load(0).getpixel((0, 0)) == (1, 2, 3)
    assert expand_braces("s-{08..10}.tar") == ["s-08.tar", "s-09.tar", "s-10.tar"]


def test_views_are_a_pure_function_of_index_and_seed():
    views = AugmentedViews(ImageSource("bundled", 2), 24)
    random.seed(1)
    torch.manual_seed(1)
    before = random.random(), np.random.get_state()[1][0], torch.rand(1)
    random.seed(1)
    torch.manual_seed(1)
    a, b, c = views[(1, 5)]["view"], views[(1, 5)]["view"], views[(1, 6)]["view"]
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert (random.random(), torch.rand(1)) == (before[0], before[2])  # global RNGs are untouched


def test_stream_resumes_mid_way_and_shards_across_ranks():
    full = list(SampleStream(5, batch=2, steps=6, seed=3))
    assert sorted(k[0] for k in full[:5]) == list(range(5))  # an epoch visits every image once
    assert list(SampleStream(5, batch=2, steps=6, seed=3, start_step=4)) == full[8:]
    ranks = [list(SampleStream(5, batch=2, steps=3, seed=3, rank=r, world=2)) for r in range(2)]
    assert ranks[0][:2] + ranks[1][:2] == full[:4]  # step 0 of 2 ranks = the first global positions


def test_uint8_views_scale_to_exactly_the_float_views_of_to_tensor():
    from timm.data import create_transform

    from edgedistill.data.augment import seeded_rng, unit_interval

    views = AugmentedViews(ImageSource("bundled", 2), 24)
    float_transform = create_transform(input_size=24, is_training=True, scale=(0.25, 1.0), hflip=0.5, auto_augment="rand-m9-mstd0.5",
                                       interpolation="bicubic", mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), re_prob=0.0)
    for seed in range(40):  # enough draws that RandAugment's rotate/shear/translate (and their fill colour) occur
        view = views[(seed % 2, seed)]["view"]
        with seeded_rng(seed):
            reference = float_transform(views._load(seed % 2))
        assert view.dtype == torch.uint8  # a quarter of the bytes through the DataLoader, the pin and the copy
        assert torch.equal(unit_interval(view.unsqueeze(0))[0], reference), seed


def test_evaluation_and_calibration_views_read_tar_shards(tmp_path):
    from edgedistill.data.eval_set import evaluation_views
    from edgedistill.quantize.calibration import CalibrationRecipe, calibration_batch, load_recipe

    _write_tar(tmp_path / "train-000.tar", {f"{i}.png": _png((10 * i, 0, 0)) for i in range(5)} | {"bad.jpg": b"not a jpeg"})
    _write_tar(tmp_path / "train-001.tar", {f"{i}.png": _png((10 * i, 0, 0)) for i in range(5, 10)})
    pattern = str(tmp_path / "train-{000..001}.tar")
    views = evaluation_views(pattern, 4)  # export's parity batch and evalset read what distillation read
    assert len(views) == 4 and len({v.getpixel((0, 0)) for v in views}) == 4
    assert len(evaluation_views(pattern, 30)) == 30  # more views than images: the 10 readable ones, cropped again
    recipe = load_recipe(pattern)
    assert recipe.source == pattern and recipe.samples == 64
    dc = {"input_size": [3, 8, 8], "interpolation": "bilinear", "mean": [0.5] * 3, "std": [0.5] * 3, "crop_pct": 1.0, "crop_mode": "center"}
    assert calibration_batch(CalibrationRecipe(pattern, 6, 1), dc, tmp_path / "cache").shape == (6, 3, 8, 8)


def test_source_stamp_follows_files_and_shards_without_decoding(tmp_path):
    import os

    from edgedistill.data.images import source_stamp

    (tmp_path / "a.png").write_bytes(_png((1, 2, 3)))
    first = source_stamp(str(tmp_path))
    (tmp_path / "b.png").write_bytes(_png((4, 5, 6)))
    second = source_stamp(str(tmp_path))
    (tmp_path / "b.png").write_bytes(_png((4, 5, 6)) + b"more")  # rewritten in place
    assert len({first, second, source_stamp(str(tmp_path))}) == 3
    shards = tmp_path / "shards"
    shards.mkdir()
    _write_tar(shards / "s-0.tar", {"x.png": _png((0, 0, 0))})
    before = source_stamp(str(shards / "s-{0..0}.tar"))
    _write_tar(shards / "s-0.tar", {"x.png": _png((0, 0, 0)), "y.png": _png((9, 9, 9))})
    os.utime(shards / "s-0.tar", ns=(1, 1))  # even with an old mtime, the size tells
    assert source_stamp(str(shards / "s-{0..0}.tar")) != before


@pytest.mark.parametrize("mode", ["RGB", "L", "RGBA", "P"])
def test_every_image_mode_loads_as_rgb_pixels_of_convert_from_folders_and_shards(tmp_path, mode):
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 255, (12, 10, 3), dtype=np.uint8)).convert(mode)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    (tmp_path / "folder").mkdir()
    (tmp_path / "folder" / "a.png").write_bytes(buffer.getvalue())
    _write_tar(tmp_path / "s-0.tar", {"a.png": buffer.getvalue()})
    expected = np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"))
    for source in (str(tmp_path / "folder"), str(tmp_path / "s-0.tar")):
        loaded = ImageSource(source).load(0)
        assert loaded.mode == "RGB"
        np.testing.assert_array_equal(np.asarray(loaded), expected)
