"""INT8 with the onnxruntime versions pyproject admits: quantize_static before 1.27 has no calibration_cache_path
(Python 3.10, so JetPack 6, ends at 1.23.2), and the QLinearSoftmax kernel of 1.18-1.31 writes zeros for a
calibrated output scale, so no Q/DQ may sit on a MatMul's output (the attention scores before Softmax)."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime.quantization as ortq
import onnxruntime.quantization.calibrate as ortcal
from onnx import TensorProto, helper, numpy_helper
from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType

from edgedistill.config import QuantizeConfig
from edgedistill.export.onnx_export import export_onnx
from edgedistill.quantize import fallback
from edgedistill.quantize.fidelity import Budget
from edgedistill.quantize.ort_static import quantize_ort_static
from tests.small_cnn import small_cnn
from tests.test_quantize_entropy import input_scale, matmul_with_outliers


def simulate_before_1_27(monkeypatch) -> list:
    """onnxruntime 1.18-1.26: quantize_static without calibration_cache_path, and no save_tensors_data.
    Returns the calibration reader of each call (those versions calibrate on every call)."""
    real, readers = ortq.quantize_static, []

    def quantize_static(model_input, model_output, calibration_data_reader, quant_format=QuantFormat.QDQ, op_types_to_quantize=None,
                        per_channel=False, reduce_range=False, activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                        nodes_to_quantize=None, nodes_to_exclude=None, use_external_data_format=False,
                        calibrate_method=CalibrationMethod.MinMax, calibration_providers=None, extra_options=None):
        readers.append(calibration_data_reader)
        return real(model_input, model_output, calibration_data_reader, quant_format=quant_format, op_types_to_quantize=op_types_to_quantize,
                    per_channel=per_channel, reduce_range=reduce_range, activation_type=activation_type, weight_type=weight_type,
                    nodes_to_quantize=nodes_to_quantize, nodes_to_exclude=nodes_to_exclude, use_external_data_format=use_external_data_format,
                    calibrate_method=calibrate_method, calibration_providers=calibration_providers, extra_options=extra_options)

    monkeypatch.setattr(ortq, "quantize_static", quantize_static)
    monkeypatch.delattr(ortcal, "save_tensors_data")
    return readers


def test_the_fallback_without_saved_ranges_writes_a_model_and_makes_the_same_choice(tmp_path, monkeypatch):
    export_onnx(small_cnn(outlier_channel=True), [3, 32, 32], tmp_path / "model.onnx", ["logits"])
    rng = np.random.default_rng(0)
    calibration, holdout = (rng.standard_normal((16, 3, 32, 32)).astype(np.float32) for _ in range(2))
    cfg = QuantizeConfig(sensitivity_samples=4, fallback_refine=2, fallback_max_float_share=1.0)
    budget = Budget(1.5, 1.0)  # no cosine reaches it: the search runs every round it may

    def search(name: str) -> dict:
        result = fallback.quantize_with_fallback(tmp_path / "model.onnx", tmp_path / name, calibration, holdout, cfg, budget)
        assert (tmp_path / name).is_file()
        return result.as_record()

    saved = search("saved.onnx")  # this venv's onnxruntime: calibrated once, the ranges loaded by later rounds
    readers = simulate_before_1_27(monkeypatch)
    again = search("again.onnx")
    assert readers and None not in readers  # each round calibrated again
    assert len(saved["trials"]) > 1 and again == saved  # same ranges, so the same trials, cosines and float layers


def test_entropy_without_saved_ranges_gives_the_same_clipped_ranges(tmp_path, monkeypatch):
    model, batch = matmul_with_outliers(tmp_path)

    def quantized_scale(name: str, method: str) -> float:
        quantize_ort_static(model, tmp_path / name, batch, QuantizeConfig(method=method))
        return input_scale(tmp_path / name)

    minmax, saved = quantized_scale("minmax.onnx", "minmax"), quantized_scale("saved.onnx", "entropy")
    readers = simulate_before_1_27(monkeypatch)
    assert quantized_scale("again.onnx", "entropy") == saved < 0.5 * minmax and readers


def test_no_qdq_on_matmul_outputs_so_softmax_is_not_fused_into_qlinearsoftmax(tmp_path):
    rng = np.random.default_rng(0)
    w1, w2 = (numpy_helper.from_array(rng.standard_normal((16, 16)).astype(np.float32), n) for n in ("w1", "w2"))
    nodes = [helper.make_node("MatMul", ["input", "w1"], ["scores"], name="qk"), helper.make_node("Softmax", ["scores"], ["probs"], axis=-1),
             helper.make_node("MatMul", ["probs", "w2"], ["out"], name="pv"), helper.make_node("Relu", ["out"], ["embedding"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 8, 16])],
                              [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, [1, 8, 16])], [w1, w2])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), tmp_path / "m.onnx")
    quantize_ort_static(tmp_path / "m.onnx", tmp_path / "q.onnx", rng.standard_normal((4, 8, 16)).astype(np.float32),
                        QuantizeConfig(op_types=("MatMul",)))
    q = onnx.load(str(tmp_path / "q.onnx")).graph
    producer = {o: n.op_type for n in q.node for o in n.output}
    matmuls = [n for n in q.node if n.op_type == "MatMul"]
    assert all(producer.get(i) == "DequantizeLinear" for n in matmuls for i in n.input)  # both MatMuls quantized
    assert producer[next(n for n in q.node if n.op_type == "Softmax").input[0]] == "MatMul"  # float scores into Softmax
    assert not [n for n in q.node if n.op_type == "QuantizeLinear" and producer.get(n.input[0]) == "MatMul"]
