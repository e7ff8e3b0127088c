"""nncf.quantize_with_accuracy_control through the quantize stage's OpenVINO path: with a
teacher-labelled validation set (the fp32 model's own outputs) it reverts quantizers that hurt."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from edgedistill.backends.signal_stack import signal_stack_is_valid
from edgedistill.config import QuantizeConfig
from edgedistill.export.onnx_export import export_onnx
from edgedistill.quantize.fidelity import compare, run_model
from edgedistill.quantize.nncf_ov import quantize_openvino_int8


def test_accuracy_control_reverts_harmful_quantizers(tmp_path: Path):
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 16, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(16, 16, 3, padding=1, groups=16), torch.nn.ReLU(),
        torch.nn.Conv2d(16, 32, 1), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(32, 10),
    ).eval()
    onnx_path = export_onnx(model, [3, 32, 32], tmp_path / "m.onnx", ["embedding"])
    rng = np.random.default_rng(0)
    calibration = rng.standard_normal((16, 3, 32, 32)).astype(np.float32) * np.float32(0.02)  # poor ranges on purpose
    validation = rng.standard_normal((16, 3, 32, 32)).astype(np.float32)
    reference = run_model(onnx_path, validation)
    cfg = QuantizeConfig(nncf_accuracy_control=True, nncf_max_drop=0.001, fallback_max_trials=3)
    plain = quantize_openvino_int8(onnx_path, tmp_path / "plain" / "model.xml", calibration, cfg)  # no validation set: plain
    controlled = quantize_openvino_int8(onnx_path, tmp_path / "ac" / "model.xml", calibration, cfg, (validation, reference["embedding"]))
    assert plain["accuracy_control"] is False and controlled["accuracy_control"] is True and controlled["max_drop"] == 0.001
    before = compare(reference, run_model(tmp_path / "plain" / "model.xml", validation, backend="openvino"))
    after = compare(reference, run_model(tmp_path / "ac" / "model.xml", validation, backend="openvino"))
    assert after.cosine > before.cosine
    # NNCF's ov.Core objects go in creation order; the thread must not be left on an unmapped signal stack
    assert signal_stack_is_valid()
