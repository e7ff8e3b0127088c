"""The embedded teacher really is ImageNet EfficientNet-Lite0: it classifies real photos."""

import pytest
import torch
from PIL import Image

from edgedistill.data.sample_photos import bundled_photo_paths
from edgedistill.models.preprocess import eval_transform
from edgedistill.models.teacher import create_teacher
from edgedistill.config import TeacherConfig

# ImageNet-1k class indices.
CATS = set(range(281, 286))  # tabby, tiger cat, Persian, Siamese, Egyptian cat
COFFEE = {967, 968, 504}  # espresso, cup, coffee mug
MOTORBIKE = {665, 670}  # moped, motor scooter
ROCKET = {657, 744, 812}  # missile, projectile, space shuttle


@pytest.fixture(scope="module")
def teacher():
    return create_teacher(TeacherConfig())


def top5(teacher, name: str) -> list[int]:
    path = next(p for p in bundled_photo_paths() if p.name == name)
    x = eval_transform(teacher.data_config)(Image.open(path).convert("RGB"))[None]
    return teacher.logits(x)[0].topk(5).indices.tolist()


@pytest.mark.parametrize("photo,classes", [("chelsea.png", CATS), ("coffee.png", COFFEE), ("motorcycle_left.png", MOTORBIKE), ("rocket.jpg", ROCKET)])
def test_top1_on_real_photos(teacher, photo, classes):
    assert top5(teacher, photo)[0] in classes


def test_teacher_targets_shapes(teacher):
    x = torch.zeros(2, *teacher.data_config["input_size"])
    targets = teacher.targets(x)
    assert targets.token.shape == (2, 1280)
    assert targets.patches.shape == (2, 49, 1280)
    assert targets.grid == (7, 7)
    assert teacher.data_config["mean"] == [0.5, 0.5, 0.5]


def test_teacher_stays_frozen(teacher):
    teacher.train()
    assert not teacher.model.training
    assert not any(p.requires_grad for p in teacher.parameters())
