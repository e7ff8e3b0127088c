"""INT8 fidelity on the real-weight teacher, with a threshold that broken calibration fails."""

import numpy as np
import pytest
import torch

from edgedistill.backends import get_backend
from edgedistill.bench.fidelity import run_all
from edgedistill.data.eval_set import evaluation_views
from edgedistill.export.onnx_export import export_onnx, simplify
from edgedistill.export.parity import rowwise_cosine, top1_agreement
from edgedistill.models.offline_teacher import load_offline_efficientnet_lite0
from edgedistill.models.preprocess import preprocess_images, resolve_data_config
from edgedistill.quantize.calibration import CalibrationRecipe, calibration_batch
from edgedistill.quantize.nncf_ov import quantize_nncf


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    model = load_offline_efficientnet_lite0()
    config = resolve_data_config(model)
    root = tmp_path_factory.mktemp("int8")
    onnx_path = simplify(export_onnx(model, config["input_size"], root / "teacher.onnx", ["logits"], opset=17))
    x = preprocess_images(evaluation_views("bundled", 48), config)  # held-out views, not calibration views
    with torch.no_grad():
        reference = model(torch.from_numpy(x)).numpy()
    calib = calibration_batch(CalibrationRecipe(samples=48), config)
    return root, onnx_path, x, reference, calib


def fidelity_of(xml, x, reference):
    with get_backend("openvino").runner(xml) as runner:
        out = run_all(runner, x)["logits"]
    return top1_agreement(out, reference), float(rowwise_cosine(out, reference).mean())


def test_calibrated_int8_keeps_fidelity(setup):
    root, onnx_path, x, reference, calib = setup
    top1, cosine = fidelity_of(quantize_nncf(onnx_path, root / "good" / "model.xml", calib, transformer=False), x, reference)
    # Measured here: ~0.90 top-1 agreement, cosine ~0.99; broken calibration gives ~0.
    assert top1 >= 0.8 and cosine >= 0.98


def test_broken_calibration_fails_the_same_threshold(setup):
    root, onnx_path, x, reference, calib = setup
    broken = np.zeros_like(calib) + 0.01  # a calibration set that carries no image statistics
    top1, cosine = fidelity_of(quantize_nncf(onnx_path, root / "broken" / "model.xml", broken, transformer=False), x, reference)
    assert not (top1 >= 0.8 and cosine >= 0.98)
