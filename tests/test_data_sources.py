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
from tests.image_files import png_bytes as png, write_tar


def test_tar_shards_with_a_broken_member_are_read_and_counted(tmp_path):
    write_tar(tmp_path / "train-000.tar", {"a.png": png((255, 0, 0)), "a.cls": b"3", "b.jpg": b"not a jpeg"})
    write_tar(tmp_path / "train-001.tar", {"c.png": png((0, 0, 255))})
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
    (tmp_path / "docs" / "preview.png").write_bytes(png((0, 255, 0)))  # one stray image beside the shards
    with pytest.raises(EdgedistillError, match="both .tar shards and image files") as error:
        ImageSource(str(tmp_path))
    assert "*.tar" in error.value.fix
    assert len(ImageSource(str(tmp_path / "*.tar"))) == 3  # the fix it names works


def test_txt_file_list_and_brace_expansion(tmp_path):
    (tmp_path / "x.png").write_bytes(png((1, 2, 3)))
    (tmp_path / "list.txt").write_text("# photos\nx.png\n   # an indented comment\n")
    assert ImageSource(str(tmp_path / "list.txt")).paths == [str(tmp_path / "x.png")]
    assert ImageSource(str(tmp_path / "list.txt")).load(0).getpixel((0, 0)) == (1, 2, 3)
    (tmp_path / "latin1.txt").write_bytes("caf\xe9.png\n".encode("latin-1"))
    with pytest.raises(EdgedistillError, match="image list .*latin1.txt' is not UTF-8 text"):
        ImageSource(str(tmp_path / "latin1.txt"))
    assert expand_braces("s-{08..10}.tar") == ["s-08.tar", "s-09.tar", "s-10.tar"]


def test_a_listed_home_relative_path_resolves_against_home(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / "x.png").write_bytes(png((4, 5, 6)))
    (tmp_path / "lists").mkdir()
    (tmp_path / "lists" / "train.txt").write_text("~/x.png\n")
    assert ImageSource(str(tmp_path / "lists" / "train.txt")).load(0).getpixel((0, 0)) == (4, 5, 6)


def test_compressed_shards_are_refused_with_the_fix(tmp_path):
    # offsets index the uncompressed stream, so seeking in a .tar.gz would read garbage as "unreadable images"
    with tarfile.open(tmp_path / "train-000.tar", "w:gz") as tar:
        info = tarfile.TarInfo("a.png")
        info.size = len(png((1, 1, 1)))
        tar.addfile(info, io.BytesIO(png((1, 1, 1))))
    with pytest.raises(EdgedistillError, match="it is a compressed tar") as error:
        ImageSource(str(tmp_path / "train-000.tar"))
    assert "uncompressed" in error.value.fix


def test_many_shards_keep_few_files_open(tmp_path, monkeypatch):
    monkeypatch.setattr("edgedistill.data.shards.OPEN_SHARDS", 2)
    for s in range(5):
        write_tar(tmp_path / f"train-{s:03d}.tar", {f"{s}.png": png((s, 0, 0))})
    source = ImageSource(str(tmp_path / "train-{000..004}.tar"))
    for _ in range(2):
        assert [source.load(i).getpixel((0, 0))[0] for i in (0, 1, 2, 3, 4, 1)] == [0, 1, 2, 3, 4, 1]
        assert len(source.tars._handles) == 2


def test_sixteen_bit_greyscale_is_scaled_not_clipped(tmp_path):
    ramp = (np.arange(16 * 20, dtype=np.uint16).reshape(16, 20) * 200)  # 0..63800 of 65535
    Image.fromarray(ramp).save(tmp_path / "a.png")
    loaded = np.asarray(ImageSource(str(tmp_path)).load(0))
    np.testing.assert_array_equal(loaded[..., 0], np.round(ramp / 257.0).astype(np.uint8))


@pytest.mark.parametrize("maxval, stored, expected", [(65535, 200, 1), (4095, 4000, 249)])
def test_a_sixteen_bit_pgm_is_scaled_by_its_maxval_even_when_dark(tmp_path, maxval, stored, expected):
    # all its values under 256: read as 8-bit, a near-black scan became a grey one
    pixels = np.full((4, 5), stored, dtype=">u2")
    (tmp_path / "a.pgm").write_bytes(f"P5\n5 4\n{maxval}\n".encode() + pixels.tobytes())
    assert np.asarray(ImageSource(str(tmp_path)).load(0))[0, 0].tolist() == [expected] * 3


def test_an_image_over_pillows_pixel_limit_is_skipped_not_fatal(tmp_path, monkeypatch):
    (tmp_path / "a.png").write_bytes(png((1, 2, 3)))  # 320 pixels
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # over twice the limit: DecompressionBombError
    source = ImageSource(str(tmp_path))
    assert source.load(0) is None and source.last_failure[1] == "DecompressionBombError"


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


def test_consecutive_views_of_one_image_decode_it_once_and_keep_their_pixels(monkeypatch):
    import edgedistill.data.augment as augment

    monkeypatch.setattr(augment, "PRELOAD_LIMIT", 0)  # a large source: every view reads its image
    source = ImageSource("bundled", 3)
    decodes = []
    load = source.load
    monkeypatch.setattr(source, "load", lambda i: decodes.append(i) or load(i))
    views = AugmentedViews(source, 24)
    keys = [(i, 100 * i + k) for i in range(3) for k in range(4)] + [(0, 7), (2, 8), (0, 9)]  # cache-teacher's order, then jumps
    got = [views[key]["view"] for key in keys]
    assert decodes == [0, 1, 2, 0, 2, 0]  # one decode per run of keys of one image
    fresh = [AugmentedViews(source, 24)[key]["view"] for key in keys]  # each view from an image decoded for it alone
    assert all(torch.equal(a, b) for a, b in zip(got, fresh))


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

    write_tar(tmp_path / "train-000.tar", {f"{i}.png": png((10 * i, 0, 0)) for i in range(5)} | {"bad.jpg": b"not a jpeg"})
    write_tar(tmp_path / "train-001.tar", {f"{i}.png": png((10 * i, 0, 0)) for i in range(5, 10)})
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

    from edgedistill.data.source_stamp import source_stamp

    (tmp_path / "a.png").write_bytes(png((1, 2, 3)))
    first = source_stamp(str(tmp_path))
    (tmp_path / "b.png").write_bytes(png((4, 5, 6)))
    second = source_stamp(str(tmp_path))
    (tmp_path / "b.png").write_bytes(png((4, 5, 6)) + b"more")  # rewritten in place
    assert len({first, second, source_stamp(str(tmp_path))}) == 3
    shards = tmp_path / "shards"
    shards.mkdir()
    write_tar(shards / "s-0.tar", {"x.png": png((0, 0, 0))})
    before = source_stamp(str(shards / "s-{0..0}.tar"))
    write_tar(shards / "s-0.tar", {"x.png": png((0, 0, 0)), "y.png": png((9, 9, 9))})
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
    write_tar(tmp_path / "s-0.tar", {"a.png": buffer.getvalue()})
    expected = np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"))
    for source in (str(tmp_path / "folder"), str(tmp_path / "s-0.tar")):
        loaded = ImageSource(source).load(0)
        assert loaded.mode == "RGB"
        np.testing.assert_array_equal(np.asarray(loaded), expected)


def _folder(root, good: int, bad: int, bad_first: bool = False):
    """A folder of `good` tiny PNGs and `bad` corrupt .jpg files, sorted so the corrupt ones come first or last."""
    root.mkdir()
    for i in range(good):
        (root / f"{'b' if bad_first else 'a'}{i:03d}.png").write_bytes(png((10 * i, 0, 0)))
    for i in range(bad):
        (root / f"{'a' if bad_first else 'b'}{i:03d}.jpg").write_bytes(b"not a jpeg")
    return str(root)


@pytest.mark.parametrize("limit", [0, 512])  # streamed (a large source) and preloaded
def test_a_source_of_only_corrupt_images_is_a_one_line_error_not_a_traceback(tmp_path, monkeypatch, limit):
    import edgedistill.data.augment as augment

    monkeypatch.setattr(augment, "PRELOAD_LIMIT", limit)
    views = None
    with pytest.raises(EdgedistillError, match=r"none of the 6 images of .* could be decoded \(e\.g\. .*b00\d\.jpg: UnidentifiedImageError\)") as error:
        views = AugmentedViews(ImageSource(_folder(tmp_path / "corrupt", 0, 6)), 16, DataConfig(auto_augment=""))
        views[(2, 7)]
    assert error.value.fix == "check the files are valid images" and "\n" not in error.value.one_line()
    assert (views is not None) == (limit == 0)  # the streamed source finds out at its first view


def test_no_readable_images_in_a_dataloader_worker_stays_one_line_with_its_fix(tmp_path, monkeypatch):
    import edgedistill.data.augment as augment

    monkeypatch.setattr(augment, "PRELOAD_LIMIT", 0)
    views = AugmentedViews(ImageSource(_folder(tmp_path / "corrupt", 0, 3)), 16, DataConfig(auto_augment=""))
    loader = torch.utils.data.DataLoader(views, batch_size=2, sampler=[(0, 1), (1, 2)], num_workers=1)
    with pytest.raises(EdgedistillError) as error:
        next(iter(loader))
    assert error.value.one_line().startswith("none of the 3 images of ")  # not torch's "Caught ... in DataLoader worker" traceback
    assert error.value.fix == "check the files are valid images" and "\n" not in error.value.one_line()


def test_an_unreadable_image_is_logged_once_however_often_views_fall_through_it(tmp_path, monkeypatch, caplog):
    import logging

    import edgedistill.data.augment as augment

    monkeypatch.setattr(augment, "PRELOAD_LIMIT", 0)
    views = AugmentedViews(ImageSource(_folder(tmp_path / "mixed", 2, 5, bad_first=True)), 16, DataConfig(auto_augment=""))
    with caplog.at_level(logging.WARNING):
        for seed in range(3):
            for index in range(len(views)):
                views[(index, seed)]
    warned = [r.getMessage() for r in caplog.records if "skipping unreadable image" in r.getMessage()]
    assert len(warned) == 5 and len(set(warned)) == 5  # one line per bad file, not one per attempt


def test_a_view_reports_every_unreadable_image_it_fell_through(tmp_path, monkeypatch):
    import edgedistill.data.augment as augment
    from edgedistill.data.augment import stand_in, unreadable_indices
    from edgedistill.distill.trainer import _count_bad

    monkeypatch.setattr(augment, "PRELOAD_LIMIT", 0)
    source = ImageSource(_folder(tmp_path / "mixed", 2, 3, bad_first=True))  # indices 0-2 corrupt, 3-4 readable
    views = AugmentedViews(source, 16, DataConfig(auto_augment=""))
    chains = {}
    for seed in range(12):
        item = views[(0, seed)]
        tried = [stand_in(0, seed, k, 5) for k in range(item["bad_run"] + 1)]  # the images the view tried, in order
        assert item["bad"] == 0 and set(tried[:-1]) <= {0, 1, 2} and tried[-1] in (3, 4)
        assert torch.equal(item["view"], views[(tried[-1], seed)]["view"])  # still the view of the image it fell through to
        chains[seed] = set(tried[:-1])
    seed = next(s for s, bad in chains.items() if len(bad) > 1)  # a view that met another unreadable image on its way
    assert (views[(4, 9)]["bad"], views[(4, 9)]["bad_run"]) == (-1, 0)
    loader = torch.utils.data.DataLoader(views, batch_size=2, sampler=[(0, seed), (4, 2)])
    skipped = set()
    assert [batch["index"].tolist() for batch in _count_bad(loader, skipped)] == [[0, 4]]
    assert skipped == chains[seed]  # the whole chain, not only its first index
    assert unreadable_indices({"bad": torch.tensor([-1]), "bad_run": torch.tensor([0]), "seed": torch.tensor([seed])}, 5) == set()


def test_views_of_readable_images_keep_their_pixels_with_bad_images_around(tmp_path, monkeypatch):
    import edgedistill.data.augment as augment

    clean = AugmentedViews(ImageSource(_folder(tmp_path / "clean", 3, 0)), 16)
    mixed_root = _folder(tmp_path / "mixed", 3, 0)
    for name in ("a000x.jpg", "a001x.jpg"):  # corrupt files sorted between a000.png, a001.png and a002.png
        (tmp_path / "mixed" / name).write_bytes(b"broken")
    for limit in (0, 512):
        monkeypatch.setattr(augment, "PRELOAD_LIMIT", limit)
        mixed = AugmentedViews(ImageSource(mixed_root), 16)
        for clean_index, mixed_index in ((0, 0), (1, 2), (2, 4)):
            for seed in (1, 2):
                assert torch.equal(clean[(clean_index, seed)]["view"], mixed[(mixed_index, seed)]["view"])
        item = mixed[(1, 3)]  # a bad index falls through to its stand-in, with the view seed it was asked for
        used = augment.stand_in(1, 3, item["bad_run"], 5)
        assert item["bad"] == 1 and used in (0, 2, 4) and torch.equal(item["view"], clean[(used // 2, 3)]["view"])


def test_sources_that_do_not_exist_say_so(tmp_path):
    with pytest.raises(EdgedistillError, match=r"image source '.*nowhere' does not exist"):
        ImageSource(str(tmp_path / "nowhere"))
    with pytest.raises(EdgedistillError, match=r"image list '.*missing\.txt' does not exist"):
        ImageSource(str(tmp_path / "missing.txt"))
    with pytest.raises(EdgedistillError, match=r"nomatch-\*\.tar' matches no tar shards"):
        ImageSource(str(tmp_path / "nomatch-*.tar"))
    with pytest.raises(EdgedistillError, match="does not exist") as error:
        ImageSource(str(tmp_path / "*.jpg"))
    assert "glob names .tar shards only" in error.value.fix
    (tmp_path / "notes.csv").write_text("x")
    with pytest.raises(EdgedistillError, match="is neither a folder nor a .txt file list"):  # it exists, but is no source
        ImageSource(str(tmp_path / "notes.csv"))


def test_a_list_of_missing_files_says_they_are_missing_and_where_relative_paths_resolve(tmp_path, monkeypatch):
    lists = tmp_path / "lists"
    lists.mkdir()
    (lists / "train.txt").write_text("a.png\nsub/b.png\n")
    with pytest.raises(EdgedistillError, match=r"none of the 2 files listed in '.*train\.txt' exist \(e\.g\. '.*lists/a\.png'\)") as error:
        ImageSource(str(lists / "train.txt"))
    assert f"relative ones resolve against its folder, {lists}" in error.value.fix
    (tmp_path / "a.png").write_bytes(png((1, 2, 3)))  # the paths were written relative to the current folder
    monkeypatch.chdir(tmp_path)
    with pytest.raises(EdgedistillError, match="none of the 2 files listed") as error:
        ImageSource(str(lists / "train.txt"))
    assert "not the current one" in error.value.fix
    (lists / "a.png").write_bytes(png((1, 2, 3)))
    source = ImageSource(str(lists / "train.txt"))  # one file there: the missing one is skipped and counted, not fatal
    assert source.load(0) is not None and source.load(1) is None


def test_a_file_that_is_not_a_tar_is_a_one_line_error(tmp_path):
    (tmp_path / "train-000.tar").write_bytes(b"not a tar archive at all" * 40)
    with pytest.raises(EdgedistillError, match="cannot read tar shard .*: it is not a tar archive") as error:
        ImageSource(str(tmp_path / "train-000.tar"))
    assert "\n" not in error.value.one_line()


def test_increasing_posterize_at_the_top_magnitude_never_fails_a_view():
    # timm asks Pillow for 0 bits there (about 7% of rand-m10-inc1 views); the view keeps 1 bit instead
    from edgedistill.data.augment import seeded_rng, training_transform

    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 40, 3), dtype=np.uint8))
    for policy in ("rand-m10-inc1", "augmix-m10"):
        transform = training_transform(24, policy, 0.25)
        for seed in range(300):
            with seeded_rng(seed):
                assert transform(image).shape == (3, 24, 24)


def test_a_small_source_is_stamped_by_content_so_a_fresh_checkout_or_a_copy_is_the_same_source(tmp_path):
    import os
    import shutil

    from edgedistill.data.source_stamp import source_stamp

    images = tmp_path / "images"
    images.mkdir()
    for i in range(3):
        (images / f"{i}.png").write_bytes(png((i, 2, 3)))
    stamp = source_stamp(str(images))
    for path in images.iterdir():  # what `git checkout` or a cache restore does to mtimes
        os.utime(path, ns=(10**18, 10**18))
    copy = tmp_path / "elsewhere" / "images"
    shutil.copytree(images, copy)
    assert source_stamp(str(images)) == source_stamp(str(copy)) == stamp
    (copy / "1.png").write_bytes(png((9, 2, 3)))  # rewritten in place at the same size: mtimes alone missed it
    assert (copy / "1.png").stat().st_size == (images / "1.png").stat().st_size and source_stamp(str(copy)) != stamp
    assert source_stamp(str(images), legacy=True) != source_stamp(str(copy), legacy=True)  # the old stamp: paths and mtimes


def test_a_source_past_the_content_budget_is_stamped_by_size_and_mtime_as_before(tmp_path, monkeypatch):
    from edgedistill.data import source_stamp as stamps

    (tmp_path / "a.png").write_bytes(png((1, 2, 3)))
    monkeypatch.setattr(stamps, "CONTENT_STAMP_BYTES", 10)
    monkeypatch.setattr(stamps, "file_digest", lambda path: pytest.fail("a large source must not be read"))
    assert stamps.source_stamp(str(tmp_path)) == stamps.source_stamp(str(tmp_path), legacy=True)
