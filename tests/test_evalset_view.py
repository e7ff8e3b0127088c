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
