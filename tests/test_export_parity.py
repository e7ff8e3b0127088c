"""Export parity on a real-weight model: torch vs ONNX Runtime FP32 vs OpenVINO FP32."""

import numpy as np
import pytest
import torch

from edgedistill.backends import get_backend
from edgedistill.backends.openvino_backend import convert_to_ir
from edgedistill.data.eval_set import evaluation_views
from edgedistill.export.onnx_export import export_onnx, simplify
from edgedistill.export.parity import compare
from edgedistill.models.offline_teacher import load_offline_efficientnet_lite0
from edgedistill.models.preprocess import preprocess_images, resolve_data_config


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    model = load_offline_efficientnet_lite0()
    config = resolve_data_config(model)
    path = tmp_path_factory.mktemp("parity") / "teacher.onnx"
    simplify(export_onnx(model, config["input_size"], path, ["logits"], opset=17))
    x = preprocess_images(evaluation_views("bundled", 12), config)
    with torch.no_grad():
        reference = model(torch.from_numpy(x)).numpy()
    return path, x, reference


def test_onnxruntime_matches_torch(exported):
    path, x, reference = exported
    with get_backend("onnxruntime").runner(path) as runner:
        out = runner.infer({"input": x})["logits"]
    parity = compare(reference, out, reference, out)
    assert parity.cosine_min > 0.99999 and parity.rel_max_abs < 1e-4
    assert parity.top1_agreement == 1.0


def test_openvino_fp32_matches_torch(exported, tmp_path):
    path, x, reference = exported
    xml = convert_to_ir(path, tmp_path / "ir" / "model.xml")
    with get_backend("openvino").runner(xml, precision_hint="f32") as runner:
        out = runner.infer({"input": x})["logits"]
        assert runner.runtime_settings()["INFERENCE_PRECISION_HINT"] in ("f32", "float32", "<Type: 'float32'>")
    parity = compare(reference, out, reference, out)
    assert parity.cosine_min > 0.9999 and parity.rel_max_abs < 1e-3
    assert parity.top1_agreement == 1.0


def test_dynamic_batch(exported):
    path, x, reference = exported
    with get_backend("onnxruntime").runner(path) as runner:
        for n in (1, 3):
            assert np.allclose(runner.infer({"input": x[:n]})["logits"], reference[:n], atol=1e-3)
