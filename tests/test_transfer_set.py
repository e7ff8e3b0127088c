"""edgedistill transfer-set: pool images nearest a few target images in the real offline teacher's embedding space."""

import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

from edgedistill.cli import main
from edgedistill.config import load_config
from edgedistill.data.images import ImageSource
from edgedistill.data.sample_photos import bundled_photo_paths
from edgedistill.distill.transfer_set import build_transfer_set, nearest_pool_images
from edgedistill.errors import EdgedistillError

from .fashion_mnist import installed, read_split

TROUSER = 1


def unit(rows) -> np.ndarray:
    rows = np.asarray(rows, np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def test_nearest_is_the_union_of_each_targets_neighbours_best_first():
    pool = unit([[1, 0], [0, 1], [1, 1], [-1, 0], [1, 0.1]])
    targets = unit([[1, 0], [0, 1]])
    rows, scores = nearest_pool_images(pool, targets, per_target=2)
    # target 0 -> pool 0 (1.0), pool 4 (0.995); target 1 -> pool 1 (1.0), pool 2 (0.707); a tie goes to pool order
    assert rows.tolist() == [0, 1, 4, 2]
    np.testing.assert_allclose(scores, [1.0, 1.0, 1 / np.sqrt(1.01), np.sqrt(0.5)], rtol=1e-5)
    rows, _ = nearest_pool_images(pool, targets, per_target=50)  # more than the pool holds: all of it, once each
    assert sorted(rows.tolist()) == [0, 1, 2, 3, 4]


def test_size_keeps_every_targets_nearest_before_any_seconds():
    """Target 0 has three look-alikes, target 1 only far neighbours: by cosine alone target 0 would fill the list."""
    pool = unit([[1, 0.01], [1, 0.02], [1, 0.03], [0.2, 1], [0.3, 1]])
    targets = unit([[1, 0], [0, 1]])
    rows, scores = nearest_pool_images(pool, targets, size=2)
    assert rows.tolist() == [0, 3] and scores.shape == (2,)
    rows, _ = nearest_pool_images(pool, targets, size=4)
    assert rows.tolist() == [0, 3, 1, 4]


def test_size_searches_deeper_when_targets_share_neighbours():
    pool = unit([[1, 0.01 * i] for i in range(8)])
    targets = unit([[1, 0], [1, 0.001]])  # the same neighbours, in the same order
    rows, _ = nearest_pool_images(pool, targets, size=5)  # depth 3 gives a union of 3: searched again at 6
    assert rows.tolist() == [0, 1, 2, 3, 4]
    assert nearest_pool_images(pool, targets, size=50)[0].tolist() == list(range(8))  # the whole pool, no more


def test_the_score_is_the_cosine_to_the_nearest_target_even_one_that_did_not_pick_it():
    pool = unit([[0.6, 0.8], [0, 1], [-1, 0]])  # kept as target A's nearest (0.6), but B's second (0.8)
    rows, scores = nearest_pool_images(pool, unit([[1, 0], [0, 1]]), per_target=1)
    assert rows.tolist() == [1, 0] and scores.tolist() == pytest.approx([1.0, 0.8])


def test_an_image_near_two_targets_is_kept_once_at_its_best_score():
    pool = unit([[1, 1], [1, 0]])
    rows, scores = nearest_pool_images(pool, unit([[1, 0.9], [1, 0.8]]), per_target=1)
    assert rows.tolist() == [0] and scores[0] == pytest.approx((unit([[1, 0.9]]) @ pool[0])[0], rel=1e-5)


@pytest.fixture
def photo_pool(tmp_path) -> tuple[Path, Path]:
    """The bundled photos as the pool, plus one unreadable file; the target is chelsea mirrored (not in the pool)."""
    pool, targets = tmp_path / "pool", tmp_path / "targets"
    pool.mkdir(), targets.mkdir()
    for path in bundled_photo_paths():
        Image.open(path).convert("RGB").save(pool / f"{path.stem}.png")
    (pool / "broken.png").write_bytes(b"not an image")
    chelsea = next(p for p in bundled_photo_paths() if p.stem == "chelsea")
    ImageOps.mirror(Image.open(chelsea).convert("RGB")).save(targets / "chelsea_mirrored.png")
    return pool, targets


def test_a_mirrored_photo_finds_its_original_first_and_the_list_is_a_data_source(photo_pool, tmp_path):
    pool, targets = photo_pool
    out = tmp_path / "lists" / "transfer.txt"
    made = build_transfer_set(load_config(), str(pool), str(targets), 3, out)
    assert Path(made.paths[0]).name == "chelsea.png" and made.scores[0] > 0.9 > made.scores[1]
    assert (made.pool, made.pool_unreadable, made.targets, made.targets_unreadable) == (13, 1, 1, 0)
    listed = ImageSource(str(out))  # what data.source and cache-teacher read
    assert listed.paths == made.paths and len(listed) == 3
    assert out.read_text().startswith("# edgedistill transfer-set: 3 of 13 pool images nearest 1 target images")


@installed
def test_fashion_mnist_trouser_targets_retrieve_trousers(tmp_path):
    """20 test images per class in the pool, 5 training trousers as targets: the teacher's (ImageNet) embedding
    must keep mostly trousers, where a random choice would keep 10%."""
    (images, labels), (train, train_labels) = read_split("test"), read_split("train")
    (tmp_path / "pool").mkdir(), (tmp_path / "targets").mkdir()
    for cls in range(10):
        for i in np.flatnonzero(labels == cls)[:20]:
            Image.fromarray(images[i]).save(tmp_path / "pool" / f"{cls}_{i:05d}.png")
    for i in np.flatnonzero(train_labels == TROUSER)[:5]:
        Image.fromarray(train[i]).save(tmp_path / "targets" / f"{i:05d}.png")
    made = build_transfer_set(load_config(), str(tmp_path / "pool"), str(tmp_path / "targets"), 10, tmp_path / "t.txt")
    classes = [int(Path(p).name.split("_")[0]) for p in made.paths]
    assert len(classes) >= 10 and classes.count(TROUSER) / len(classes) >= 0.8


def test_kept_pool_embeddings_are_reused_until_the_pool_or_teacher_changes(photo_pool, tmp_path, monkeypatch, capsys):
    from edgedistill.distill import embed

    pool, targets = photo_pool
    kept, embedded = tmp_path / "pool.safetensors", []
    real = embed.embed_images
    monkeypatch.setattr(embed, "embed_images", lambda *a, label, **k: embedded.append(label) or real(*a, label=label, **k))
    run = lambda *sets: build_transfer_set(load_config(None, list(sets)), str(pool), str(targets), 3, tmp_path / "t.txt", kept)  # noqa: E731
    first = run()
    assert embedded == ["targets", "pool"] and kept.is_file()
    again = run()
    assert embedded[2:] == ["targets"] and again.paths == first.paths and "reused" in capsys.readouterr().err
    (pool / "chelsea_copy.png").write_bytes((pool / "chelsea.png").read_bytes())
    assert len(run().paths) == 3 and embedded[3:] == ["targets", "pool"]  # the pool changed
    run("teacher.img_size=160")
    assert embedded[5:] == ["targets", "pool"] and "another teacher" in capsys.readouterr().err
    other = tmp_path / "same_names"  # another folder holding files of the same names and sizes: other images
    shutil.copytree(pool, other)
    build_transfer_set(load_config(None, ["teacher.img_size=160"]), str(other), str(targets), 3, tmp_path / "t.txt", kept)
    assert embedded[7:] == ["targets", "pool"]


@pytest.mark.parametrize("content", [b"garbage", "weights"])
def test_pool_embeddings_never_replace_a_file_that_holds_none(photo_pool, tmp_path, monkeypatch, content):
    from safetensors.numpy import save_file

    pool, targets = photo_pool
    kept = tmp_path / "student.safetensors"
    kept.write_bytes(content) if isinstance(content, bytes) else save_file({"head.weight": np.ones((2, 2), np.float32)}, str(kept))
    before = kept.read_bytes()
    monkeypatch.setattr("edgedistill.models.teacher.create_primary_teacher", lambda cfg: pytest.fail("the teacher ran first"))
    with pytest.raises(EdgedistillError, match="holds no pool embeddings"):
        build_transfer_set(load_config(), str(pool), str(targets), 3, tmp_path / "t.txt", kept)
    with pytest.raises(EdgedistillError, match="is the transfer set, which it would replace"):
        build_transfer_set(load_config(), str(pool), str(targets), 3, tmp_path / "t.txt", tmp_path / "t.txt")
    assert kept.read_bytes() == before and not (tmp_path / "t.txt").exists()


def test_a_file_listed_twice_or_linked_beside_itself_is_kept_once(photo_pool, tmp_path):
    pool, targets = photo_pool
    (pool / "zz_link.png").symlink_to(pool / "chelsea.png")
    listed = tmp_path / "pool.txt"
    listed.write_text("\n".join([str(pool / "chelsea.png")] * 2 + [str(pool / "astronaut.png"), str(pool / "coffee.png")]) + "\n")
    for source in (pool, listed):
        made = build_transfer_set(load_config(), str(source), str(targets), None, tmp_path / "t.txt", size=3)
        assert len(set(map(os.path.realpath, made.paths))) == len(made.paths) == 3


def test_an_unwritable_output_is_refused_before_the_teacher_runs(photo_pool, tmp_path, monkeypatch):
    pool, targets = photo_pool
    monkeypatch.setattr("edgedistill.models.teacher.create_primary_teacher", lambda cfg: pytest.fail("the teacher ran first"))
    for out, kept in ((pool / "chelsea.png" / "t.txt", None), (tmp_path / "t.txt", pool / "chelsea.png" / "e.safetensors")):
        with pytest.raises(EdgedistillError, match="cannot write"):
            build_transfer_set(load_config(), str(pool), str(targets), 3, out, kept)


def test_unreadable_targets_leave_an_earlier_list_untouched(photo_pool, tmp_path):
    pool, _ = photo_pool
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "a.png").write_bytes(b"no image")
    out = tmp_path / "transfer.txt"
    out.write_text("earlier list\n")
    with pytest.raises(EdgedistillError, match="none of the 1 images of .* could be decoded"):
        build_transfer_set(load_config(), str(pool), str(bad), 3, out)
    assert out.read_text() == "earlier list\n" and sorted(p.name for p in tmp_path.iterdir()) == ["bad", "pool", "targets", "transfer.txt"]


def test_missing_faiss_is_one_line_before_the_teacher_runs(photo_pool, tmp_path, monkeypatch):
    pool, targets = photo_pool
    monkeypatch.setitem(sys.modules, "faiss", None)  # import faiss -> ImportError
    monkeypatch.setattr("edgedistill.models.teacher.create_primary_teacher", lambda cfg: pytest.fail("the teacher ran first"))
    with pytest.raises(EdgedistillError, match="needs 'faiss-cpu'") as raised:
        build_transfer_set(load_config(), str(pool), str(targets), 3, tmp_path / "t.txt")
    assert "pip install 'edgedistill[retrieval]'" in raised.value.one_line()


@pytest.mark.parametrize("name,per_target,size,match", [("t.csv", 3, None, "must be a .txt file"), ("t.txt", 0, None, "--per-target must be at least 1"),
                                                        ("t.txt", None, 0, "--size must be at least 1"), ("t.txt", 3, 10, "both say")])
def test_bad_arguments_are_refused_before_any_work(photo_pool, tmp_path, name, per_target, size, match):
    pool, targets = photo_pool
    with pytest.raises(EdgedistillError, match=match):
        build_transfer_set(load_config(), str(pool), str(targets), per_target, tmp_path / name, size=size)
    assert not (tmp_path / name).exists()


def test_a_pool_name_no_list_can_hold_is_refused_before_the_teacher_runs(photo_pool, tmp_path, monkeypatch):
    pool, targets = photo_pool
    (pool / "two\nlines.png").write_bytes((pool / "chelsea.png").read_bytes())
    monkeypatch.setattr("edgedistill.models.teacher.create_primary_teacher", lambda cfg: pytest.fail("the teacher ran first"))
    with pytest.raises(EdgedistillError, match="name an image list cannot hold"):
        build_transfer_set(load_config(), str(pool), str(targets), 3, tmp_path / "t.txt")


def test_a_missing_pool_names_the_option(photo_pool, tmp_path):
    with pytest.raises(EdgedistillError, match="--pool: image source .* does not exist") as raised:
        build_transfer_set(load_config(), str(tmp_path / "nowhere"), str(photo_pool[1]), 3, tmp_path / "t.txt")
    assert "data.source" not in raised.value.one_line() and "tar" not in raised.value.one_line()  # a pool cannot be shards


@pytest.mark.parametrize("which", ["pool", "targets"])
def test_an_output_naming_an_input_list_is_refused_and_the_list_kept(photo_pool, tmp_path, which):
    pool, targets = photo_pool
    listed = tmp_path / f"{which}.txt"
    listed.write_text("\n".join(str(p) for p in sorted((pool if which == "pool" else targets).glob("*.png"))) + "\n")
    before = listed.read_text()
    sources = {"pool": str(pool), "targets": str(targets), which: str(listed)}
    with pytest.raises(EdgedistillError, match="is an input list"):
        build_transfer_set(load_config(), sources["pool"], sources["targets"], 3, listed)
    assert listed.read_text() == before


def test_tar_shards_as_the_pool_are_refused(photo_pool, tmp_path):
    from .image_files import png_bytes, write_tar

    write_tar(tmp_path / "shard-0.tar", {"a.png": png_bytes((255, 0, 0))})
    with pytest.raises(EdgedistillError, match="tar shards"):
        build_transfer_set(load_config(), str(tmp_path / "shard-0.tar"), str(photo_pool[1]), 3, tmp_path / "t.txt")


def test_cli_writes_the_list_and_refuses_bad_input_with_one_line(photo_pool, tmp_path, capsys):
    pool, targets = photo_pool
    out = tmp_path / "transfer.txt"
    assert main(["transfer-set", str(out), "--pool", str(pool), "--targets", str(targets), "-k", "2"]) == 0
    assert "wrote transfer set" in capsys.readouterr().err and len(ImageSource(str(out))) == 2  # the console is stderr
    assert main(["transfer-set", str(tmp_path / "t.json"), "--pool", str(pool), "--targets", str(targets)]) == 2
    assert "must be a .txt file" in capsys.readouterr().err


def test_extra_teachers_are_said_to_be_unused(photo_pool, tmp_path, monkeypatch, capsys):
    pool, targets = photo_pool

    class Stop(Exception):
        pass

    monkeypatch.setattr("edgedistill.models.teacher.create_primary_teacher", lambda cfg: (_ for _ in ()).throw(Stop()))
    with pytest.raises(Stop):
        build_transfer_set(load_config(None, ["teacher.extra=[{name: efficientnet_lite0.offline, img_size: 160}]"]),
                           str(pool), str(targets), 3, tmp_path / "t.txt")
    assert "teacher.extra is not used" in capsys.readouterr().err
