"""nncf.quantize_with_accuracy_control through the quantize stage's OpenVINO path: with a
teacher-labelled validation set (the fp32 model's own outputs) it reverts quantizers that hurt."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import openvino as ov
import pytest

from edgedistill.backends.signal_stack import signal_stack_is_valid
from edgedistill.config import QuantizeConfig
from edgedistill.export.onnx_export import export_onnx
from edgedistill.quantize.fidelity import compare, run_model
from edgedistill.quantize.nncf_ov import _validation, quantize_openvino_int8, quantized_ops
from tests.small_cnn import small_cnn


def test_accuracy_control_reverts_harmful_quantizers(tmp_path: Path):
    model = small_cnn()
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
    # what it reached is recorded: the poor ranges leave it above max_drop after its 3 iterations
    # scored in f32, as NNCF and bench score it (OpenVINO's default on a bf16 CPU is bf16)
    assert controlled["metric"] == "cosine" and controlled["metric_value"] == pytest.approx(after.cosine, abs=1e-6)
    assert controlled["drop"] == pytest.approx(1 - after.cosine, abs=1e-4) and controlled["within_max_drop"] is False
    # 1 - metric is the drop: the fp32 model scores 1.0 against its own outputs
    items = [(validation[i : i + 8], reference["embedding"][i : i + 8]) for i in range(0, 16, 8)]
    assert _validation(ov.Core().compile_model(str(onnx_path), "CPU"), items) == pytest.approx(1.0, abs=1e-6)
    # the layers it reverted: quantized in the plain IR, no FakeQuantize before them in this one
    convs = {"/0/Conv/WithoutBiases", "/2/Conv/WithoutBiases", "/4/Conv/WithoutBiases", "/8/Gemm/WithoutBiases"}
    plain_ops = quantized_ops(ov.Core().read_model(str(tmp_path / "plain" / "model.xml")))
    kept_ops = quantized_ops(ov.Core().read_model(str(tmp_path / "ac" / "model.xml")))
    assert controlled["quantized_ops"] == len(plain_ops) and convs <= plain_ops
    assert 0 < len(controlled["float_ops"]) <= 3 and set(controlled["float_ops"]) == plain_ops - kept_ops
    # NNCF's ov.Core objects go in creation order; the thread must not be left on an unmapped signal stack
    assert signal_stack_is_valid()
