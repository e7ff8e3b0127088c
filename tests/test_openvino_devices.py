"""OpenVINO device selection and the explicit precision hint (CPU runs here; GPU/NPU are checked
for a clear error, since this host has neither)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from edgedistill.backends import get_backend
from edgedistill.backends.openvino_backend import check_device, compile_config, convert_to_ir
from edgedistill.errors import EdgedistillError
from edgedistill.export.onnx_export import export_onnx


def test_compile_config_sets_the_precision_hint_explicitly():
    assert compile_config("CPU", "auto", 2) == {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": 2}
    assert "INFERENCE_PRECISION_HINT" not in compile_config("CPU", "default", None)
    assert compile_config("GPU", "f16", None)["INFERENCE_PRECISION_HINT"] == "f16"
    assert "INFERENCE_PRECISION_HINT" not in compile_config("NPU", "auto", None)  # the NPU computes f16 itself
    assert compile_config("AUTO", "auto", None)["DEVICE_PROPERTIES"] == {  # whichever device AUTO picks runs f32
        "CPU": {"INFERENCE_PRECISION_HINT": "f32"}, "GPU": {"INFERENCE_PRECISION_HINT": "f32"}}
    assert compile_config("AUTO", "f16", 2)["DEVICE_PROPERTIES"] == {
        "CPU": {"INFERENCE_PRECISION_HINT": "f16", "INFERENCE_NUM_THREADS": 2}, "GPU": {"INFERENCE_PRECISION_HINT": "f16"}}


def test_missing_device_is_a_clear_error():
    import openvino as ov

    core = ov.Core()
    check_device(core, "CPU")
    check_device(core, "AUTO")
    for device in ("NPU", "AUTO:NPU,CPU"):
        if device.split(":")[-1].split(",")[0] in core.available_devices:
            continue
        with pytest.raises(EdgedistillError, match="not available"):
            check_device(core, device)
    with pytest.raises(EdgedistillError, match="unknown OpenVINO device"):
        check_device(core, "TPU")


class _Core:
    def __init__(self, *devices):
        self.available_devices = list(devices)


def test_a_gpu_index_the_host_lacks_is_refused():
    check_device(_Core("CPU", "GPU"), "GPU.0")  # one GPU answers to GPU.0
    check_device(_Core("CPU", "GPU.0", "GPU.1"), "GPU")
    check_device(_Core("CPU", "GPU.0", "GPU.1"), "GPU.1")
    for wanted in ("GPU.1", "GPU.7", "AUTO:GPU.1,CPU"):
        with pytest.raises(EdgedistillError, match="GPU.\\d is not available"):
            check_device(_Core("CPU", "GPU"), wanted)


@pytest.fixture(scope="module")
def tiny_ir(tmp_path_factory):
    root = tmp_path_factory.mktemp("ov")
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten()).eval()
    export_onnx(model, [3, 16, 16], root / "m.onnx", ["embedding"])
    return convert_to_ir(root / "m.onnx", root / "fp32" / "model.xml"), convert_to_ir(root / "m.onnx", root / "fp16" / "model.xml", fp16_weights=True)


@pytest.mark.parametrize("device", ["CPU", "AUTO"])
def test_runner_records_the_hint_it_applied(tiny_ir, device):
    fp32, fp16 = tiny_ir
    x = np.random.default_rng(0).standard_normal((2, 3, 16, 16)).astype(np.float32)
    outputs = []
    for path in (fp32, fp16):
        with get_backend("openvino").runner(path, device=device) as runner:
            outputs.append(runner.infer({"input": x})["embedding"])
            settings = runner.runtime_settings()
        assert settings["device"] == device and "CPU" in settings["execution_devices"]
        if device == "CPU":
            assert settings["INFERENCE_PRECISION_HINT"] == "f32"
        else:
            assert settings["config"]["DEVICE_PROPERTIES"]["CPU"]["INFERENCE_PRECISION_HINT"] == "f32"
    np.testing.assert_allclose(outputs[0], outputs[1], rtol=1e-2, atol=1e-3)  # fp16 weights, f32 compute


def test_an_fp16_ir_says_fp16_in_its_metadata(tiny_ir):
    import openvino as ov

    fp32, fp16 = tiny_ir
    model = ov.Core().read_model(str(fp16))
    assert model.get_rt_info(["framework", "edgedistill.precision"]).astype(str) == "fp16"  # not the ONNX file's fp32
    assert not ov.Core().read_model(str(fp32)).has_rt_info(["framework", "edgedistill.precision"])


def test_compile_converts_the_onnx_once_for_both_weight_precisions(tiny_ir, tmp_path, monkeypatch):
    """compile saves its fp32 and fp16 IRs from one converted model, each saying its own precision."""
    import dataclasses
    import filecmp
    import shutil

    import openvino as ov

    from edgedistill.artifacts import Artifact
    from edgedistill.backends import compile_stage
    from edgedistill.config import load_config
    from edgedistill.targets import load_target

    shutil.copy(tiny_ir[0].parent.parent / "m.onnx", tmp_path / "model.onnx")
    onnx = Artifact.record(tmp_path, tmp_path / "model.onnx", kind="onnx", name="onnx-fp32", data_config={})
    target = dataclasses.replace(load_target("x86-cpu"), precisions=("fp16", "fp32"))
    conversions, real = [], ov.convert_model
    monkeypatch.setattr(ov, "convert_model", lambda *a, **k: conversions.append(a) or real(*a, **k))
    produced = {a.name: a.abspath(tmp_path) / "model.xml" for a in compile_stage.run(load_config(None, []), {"onnx": onnx}, tmp_path, target)}
    assert len(conversions) == 1
    assert ov.Core().read_model(str(produced["openvino-fp16"])).get_rt_info(["framework", "edgedistill.precision"]).astype(str) == "fp16"
    assert not ov.Core().read_model(str(produced["openvino-fp32"])).has_rt_info(["framework", "edgedistill.precision"])
    for name, separate in zip(("openvino-fp32", "openvino-fp16"), tiny_ir):  # the weights as converting each on its own wrote them
        assert filecmp.cmp(produced[name].with_suffix(".bin"), separate.with_suffix(".bin"), shallow=False)


def _input_shape(xml):
    import openvino as ov

    return str(ov.Core().read_model(str(xml)).inputs[0].get_partial_shape())


def test_an_npu_ir_is_saved_with_a_static_batch(tmp_path):
    """The NPU plugin compiles static shapes only: its IRs (fp32 and NNCF's int8) are fixed at the target's
    batch; other devices keep the dynamic batch the ONNX model has."""
    from edgedistill.backends.openvino_backend import ir_batch
    from edgedistill.quantize.nncf_ov import quantize_openvino_int8

    model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten()).eval()
    onnx_path = export_onnx(model, [3, 16, 16], tmp_path / "m.onnx", ["embedding"])
    assert ir_batch("NPU", 1) == 1 and ir_batch("CPU", 1) is None and ir_batch("AUTO:NPU,CPU", 1) is None
    assert _input_shape(convert_to_ir(onnx_path, tmp_path / "npu" / "model.xml", batch=ir_batch("NPU", 1))) == "[1,3,16,16]"
    assert _input_shape(convert_to_ir(onnx_path, tmp_path / "cpu" / "model.xml", batch=ir_batch("CPU", 1))) == "[?,3,16,16]"
    calibration = np.random.default_rng(0).standard_normal((4, 3, 16, 16)).astype(np.float32)
    quantize_openvino_int8(onnx_path, tmp_path / "int8" / "model.xml", calibration, fixed_batch=1)
    assert _input_shape(tmp_path / "int8" / "model.xml") == "[1,3,16,16]"
    # and bench runs it: fidelity's 48 views go in one row at a time (in chunks of 16 they failed every NPU row)
    views = np.random.default_rng(1).standard_normal((5, 3, 16, 16)).astype(np.float32)
    with get_backend("openvino").runner(tmp_path / "npu" / "model.xml", device="CPU") as static, \
            get_backend("openvino").runner(tmp_path / "cpu" / "model.xml", device="CPU") as dynamic:
        assert static.batch_limits() == (1, 1) and dynamic.batch_limits() == (1, None)
        np.testing.assert_allclose(static.infer_all(views)["embedding"], dynamic.infer_all(views)["embedding"], rtol=1e-5, atol=1e-6)


def test_auto_does_not_answer_on_the_cpu_while_another_device_compiles():
    assert compile_config("AUTO:GPU,CPU", "auto", None)["ENABLE_STARTUP_FALLBACK"] is False
    assert "ENABLE_STARTUP_FALLBACK" not in compile_config("GPU", "auto", None)
