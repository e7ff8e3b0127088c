"""kNN / linear-probe accuracy on a real labelled folder (Fashion-MNIST images written as PNG)."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edgedistill.backends import get_backend
from edgedistill.bench.labelled import list_labelled, load_labelled, preprocess
from edgedistill.bench.probe import probe_accuracy
from edgedistill.errors import EdgedistillError

from .test_bench_fixtures import embedder

FMNIST = Path("/usr/share/datasets/fashion-mnist")
DATA_CONFIG = {"input_size": [3, 16, 16], "interpolation": "bicubic", "mean": [0.5] * 3, "std": [0.25] * 3, "crop_pct": 1.0, "crop_mode": "center"}


@pytest.fixture(scope="module")
def fashion_folder(tmp_path_factory) -> Path:
    """30 test-set images per class, as class_<k>/<i>.png (the ImageFolder layout)."""
    if not (FMNIST / "t10k-images-idx3-ubyte.gz").is_file():
        pytest.skip("Fashion-MNIST is not installed here")
    images = np.frombuffer(gzip.open(FMNIST / "t10k-images-idx3-ubyte.gz").read(), np.uint8, offset=16).reshape(-1, 28, 28)
    labels = np.frombuffer(gzip.open(FMNIST / "t10k-labels-idx1-ubyte.gz").read(), np.uint8, offset=8)
    root = tmp_path_factory.mktemp("fmnist")
    for cls in range(10):
        (root / f"class_{cls}").mkdir()
        for i, index in enumerate(np.flatnonzero(labels == cls)[:30]):
            Image.fromarray(images[index]).save(root / f"class_{cls}" / f"{i:03d}.png")
    return root


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
