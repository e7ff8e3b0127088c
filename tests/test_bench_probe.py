"""kNN / linear-probe accuracy on a real labelled folder (Fashion-MNIST images written as PNG)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edgedistill.backends import get_backend
from edgedistill.bench.labelled import list_labelled, load_labelled, preprocess
from edgedistill.bench.probe import probe_accuracy
from edgedistill.errors import EdgedistillError

from .fashion_mnist import FMNIST, write_class_folders
from .test_bench_fixtures import embedder

DATA_CONFIG = {"input_size": [3, 16, 16], "interpolation": "bicubic", "mean": [0.5] * 3, "std": [0.25] * 3, "crop_pct": 1.0, "crop_mode": "center"}


@pytest.fixture(scope="module")
def fashion_folder(tmp_path_factory) -> Path:
    """30 test-set images per class, as class_<k>/<i>.png (the ImageFolder layout)."""
    if not (FMNIST / "t10k-images-idx3-ubyte.gz").is_file():
        pytest.skip("Fashion-MNIST is not installed here")
    return write_class_folders(tmp_path_factory.mktemp("fmnist"), "test", 30)


def test_probe_accuracy_of_a_real_runtime_embedding(fashion_folder, tmp_path):
    x, y, classes = load_labelled(fashion_folder, DATA_CONFIG, max_images=300)
    assert x.shape == (300, 3, 16, 16) and len(classes) == 10 and np.bincount(y).tolist() == [30] * 10
    with get_backend("onnxruntime").runner(embedder(tmp_path / "m.onnx", dim=64), threads=1) as runner:
        embeddings = runner.infer_all(x)["embedding"]
    result = probe_accuracy(embeddings, y, k=5)
    # Chance is 10%; a random ReLU projection of the pixels keeps enough to sort clothing.
    assert result["knn_top1"] > 0.4 and result["linear_probe_top1"] > 0.4
    assert "5-fold" in result["protocol"]
    assert probe_accuracy(embeddings, y, k=5) == result  # seeded folds: reproducible


def test_max_images_spreads_over_classes(fashion_folder):
    paths, labels, _ = list_labelled(fashion_folder, max_images=40)
    assert np.bincount(labels).tolist() == [4] * 10 and len(paths) == 40


def test_folder_errors(tmp_path):
    with pytest.raises(EdgedistillError, match="not a folder"):
        list_labelled(tmp_path / "missing")
    (tmp_path / "only").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "only" / "a.png")
    Image.new("RGB", (8, 8)).save(tmp_path / "only" / "b.png")
    with pytest.raises(EdgedistillError, match="at least 2 class"):
        list_labelled(tmp_path)


def test_unreadable_images_are_skipped_and_labels_stay_with_their_images(tmp_path):
    for cls, shade in (("a", 40), ("b", 200)):
        (tmp_path / cls).mkdir()
        Image.new("L", (20, 20), shade).save(tmp_path / cls / "0.png")  # greyscale: decoded as RGB
        Image.new("RGB", (20, 20), (shade,) * 3).save(tmp_path / cls / "1.jpg")
    good = (tmp_path / "a" / "0.png").read_bytes()
    (tmp_path / "a" / "2.png").write_bytes(good[: len(good) // 2])  # truncated mid-stream: OSError
    (tmp_path / "b" / "2.png").write_bytes(b"not an image")
    x, y, classes = load_labelled(tmp_path, DATA_CONFIG)
    assert classes == ["a", "b"] and y.tolist() == [0, 0, 1, 1]
    shade = x[:, 0].mean(axis=(1, 2)) * DATA_CONFIG["std"][0] + DATA_CONFIG["mean"][0]
    assert np.allclose(shade, [40 / 255] * 2 + [200 / 255] * 2, atol=0.02)  # each label kept its own image
    for path in tmp_path.glob("*/[01].*"):
        path.write_bytes(b"")
    with pytest.raises(EdgedistillError, match="no image in bench.eval_dir .* could be decoded"):
        load_labelled(tmp_path, DATA_CONFIG)


@pytest.mark.parametrize("size", [(300, 200), (180, 260), (112, 112)])
def test_numpy_preprocess_matches_timm(size):
    from edgedistill.models.preprocess import preprocess_images

    rng = np.random.default_rng(sum(size))
    img = Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8))
    config = {"input_size": [3, 112, 112], "interpolation": "bicubic", "mean": [0.485, 0.456, 0.406],
              "std": [0.229, 0.224, 0.225], "crop_pct": 0.875, "crop_mode": "center"}
    ours = preprocess(img, config)
    timm = preprocess_images([img], config)[0]
    assert ours.shape == timm.shape and np.abs(ours - timm).max() < 1e-4


def test_max_images_is_an_upper_bound_with_more_classes_than_room(tmp_path):
    for cls in range(10):
        (tmp_path / f"c{cls}").mkdir()
        for i in range(3):
            Image.new("RGB", (8, 8), (cls * 20, i * 50, 0)).save(tmp_path / f"c{cls}" / f"{i}.png")
    paths, labels, classes = list_labelled(tmp_path, max_images=10)
    assert len(paths) == 10 and np.bincount(labels).tolist() == [2] * 5  # it kept 2 of each of the 10 classes: 20
    assert classes == ["c0", "c2", "c4", "c7", "c9"]  # evenly spaced, the same every run
    paths, labels, classes = list_labelled(tmp_path, max_images=7)
    assert len(paths) == 6 and classes == ["c0", "c4", "c9"]
    with pytest.raises(EdgedistillError, match="eval_max_images=3 leaves room for fewer than 2 classes"):
        list_labelled(tmp_path, max_images=3)


def test_an_eval_folder_follows_symlinked_class_subfolders_and_skips_dotfiles(tmp_path):
    for cls in ("a", "b"):
        (tmp_path / "real" / cls / "nested").mkdir(parents=True)
        for i in range(2):
            Image.new("RGB", (8, 8), (i * 50, 0, 0)).save(tmp_path / "real" / cls / "nested" / f"{i}.png")
        (tmp_path / "real" / cls / "._0.png").write_bytes(b"AppleDouble metadata, no image")
    (tmp_path / "eval").mkdir()
    for cls in ("a", "b"):
        (tmp_path / "eval" / cls).mkdir()
        (tmp_path / "eval" / cls / "linked").symlink_to(tmp_path / "real" / cls / "nested")  # rglob skipped these
    paths, labels, classes = list_labelled(tmp_path / "eval")
    assert classes == ["a", "b"] and np.bincount(labels).tolist() == [2, 2] and all(p.name != "._0.png" for p in paths)
