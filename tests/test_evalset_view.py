"""The evaluation set gives teacher and student the same field of view, as training did."""

import numpy as np
from PIL import Image

from edgedistill.export.evalset import same_view_config
from edgedistill.models.preprocess import preprocess_images

STUDENT = {"input_size": [3, 32, 32], "interpolation": "bilinear", "mean": (0, 0, 0), "std": (1, 1, 1), "crop_pct": 0.75}
TEACHER = {"input_size": [3, 64, 64], "interpolation": "bicubic", "mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5), "crop_pct": 1.0}


def test_teacher_sees_the_students_crop_at_its_own_size_and_normalisation():
    frame = np.zeros((100, 100, 3), np.uint8)
    frame[:8], frame[-8:], frame[:, :8], frame[:, -8:] = 255, 255, 255, 255  # a white border the 0.75 crop removes
    image = Image.fromarray(frame)
    own = preprocess_images([image], TEACHER)[0]
    shared = preprocess_images([image], same_view_config(TEACHER, STUDENT))[0]
    assert own.shape == shared.shape == (3, 64, 64)
    assert own.max() == 1.0 and shared.max() == -1.0  # the border is in the teacher's own crop, not in the student's
    assert preprocess_images([image], STUDENT)[0].max() == 0.0  # the student's view has no border either


def test_the_evaluation_teacher_is_the_distillation_teacher_even_when_randomly_initialised(tmp_path):
    # top-1 vs teacher compares the student with the teacher it learned from: a fresh random teacher would be another model
    import torch

    from edgedistill.config import load_config
    from edgedistill.data.eval_set import evaluation_views
    from edgedistill.export.evalset import write_evalset
    from edgedistill.models.teacher import create_teachers

    cfg = load_config(None, ["teacher.name=vit_tiny_patch16_224", "teacher.pretrained=false", "teacher.img_size=32",
                             "teacher.model_args={depth: 1}", "bench.eval_images=4"])
    for run in ("a", "b"):
        write_evalset(cfg, STUDENT, tmp_path / run, "onnx-fp32")
    embedding = np.load(tmp_path / "a" / "eval" / "teacher_embedding.npy")
    np.testing.assert_array_equal(embedding, np.load(tmp_path / "b" / "eval" / "teacher_embedding.npy"))
    distilled_from = create_teachers(cfg.teacher)[0]
    views = evaluation_views(cfg.data.source, 4)
    with torch.no_grad():
        expected = distilled_from.targets(torch.from_numpy(preprocess_images(views, same_view_config(distilled_from.data_config, STUDENT)))).token
    np.testing.assert_allclose(embedding, expected.numpy(), atol=1e-5)
