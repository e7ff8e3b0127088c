"""A user-written target profile is checked when it loads: what it must name, figures it cannot mean, device
strings OpenVINO rejects or its backends cannot run on, text YAML read as a number, and errors that say where."""

from __future__ import annotations

import re

import pytest

from edgedistill.errors import EdgedistillError
from edgedistill.targets import load_target

# A Raspberry Pi 5 profile, as a user writes one from the README's field list.
PI = """name: rpi5
description: Raspberry Pi 5 8GB, ONNX Runtime CPU
arch: aarch64
backends: [onnxruntime]
precisions: [fp32, int8]
device: CPU
peak_tflops_fp32: 0.154
peak_tflops_fp16: 0.307
peak_tops_int8: 0.614
bandwidth_gbs: 17.1
"""
NPU = "name: lnl-npu\narch: x86_64\nbackends: [openvino]\nprecisions: [int8, fp16]\ndevice: NPU\npeak_tops_int8: 48\nbandwidth_gbs: 136.5\n"


def _load(tmp_path, text: str, name: str = "mine.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return load_target(str(path))


def _refused(tmp_path, text: str, match: str) -> EdgedistillError:
    with pytest.raises(EdgedistillError, match=match) as error:
        _load(tmp_path, text)
    assert error.value.fix and "\n" not in error.value.cause
    return error.value


@pytest.mark.parametrize("key", ["arch", "device"])
def test_a_profile_file_must_name_its_arch_and_device(tmp_path, key):
    """Defaulted, the Pi profile was timed on this x86 host and reported as the Pi's; an NPU profile ran on the CPU."""
    assert _load(tmp_path, PI).arch == "aarch64"
    for text in (PI, NPU):
        without = "".join(line + "\n" for line in text.splitlines() if not line.startswith(f"{key}:"))
        error = _refused(tmp_path, without, f"does not name its {key}")
        assert f"{key}:" in error.fix
        _refused(tmp_path, without.replace("name:", f"{key}: null\nname:"), f"does not name its {key}")
    # a misspelt key is named as such, not as a missing one
    _refused(tmp_path, PI.replace("arch:", "arhc:"), "unknown config key .*arhc")


@pytest.mark.parametrize("field", ["peak_tflops_fp32", "peak_tflops_fp16", "peak_tops_int8", "bandwidth_gbs"])
@pytest.mark.parametrize("value", ["0", "-1008", "0.0"])
def test_a_peak_or_bandwidth_that_is_not_above_zero_is_refused(tmp_path, field, value):
    """0 bandwidth meant no memory time (far too fast), a 0 int8 peak the fp16 one, negatives negative latencies."""
    text = re.sub(rf"^{field}: .*$", f"{field}: {value}", PI, flags=re.M)
    error = _refused(tmp_path, text, rf"{field} is -?[0-9.]+")
    assert "null" in error.fix


def test_unknown_figures_stay_allowed_as_null(tmp_path):
    target = _load(tmp_path, re.sub(r"^(peak_tops_int8|bandwidth_gbs): .*$", r"\1: null", PI, flags=re.M))
    assert target.peak_tops_int8 is None and target.bandwidth_gbs is None


@pytest.mark.parametrize("field, written", [("tensorrt_version", "10.10"), ("jetpack", "6.10"), ("tensorrt_version", "10.0")])
def test_a_version_yaml_reads_as_a_number_is_refused(tmp_path, field, written):
    """Unquoted, 10.10 became the text '10.1': the bundle then checked the device for TensorRT 10.1."""
    gpu = "name: box\narch: x86_64\nbackends: [tensorrt]\nprecisions: [fp16]\ndevice: GPU\n"
    error = _refused(tmp_path, gpu + f"{field}: {written}\n", f"{field}' got .*read as a number")
    assert "quote" in error.fix
    assert getattr(_load(tmp_path, gpu + f"{field}: '{written}'\n"), field) == written


@pytest.mark.parametrize("device", ["CPU.0", "NPU.0", "NPU:0", "GPU.x", " NPU", "AUTO:", "AUTO:CPU,FOO", "AUTO: CPU", "AUTO:AUTO"])
def test_a_device_openvino_would_reject_is_refused(tmp_path, device):
    """These passed, and the build exited 0 with every OpenVINO row failed."""
    text = PI.replace("backends: [onnxruntime]", "backends: [openvino]").replace("device: CPU", f"device: {device!r}")
    _refused(tmp_path, text, "device is")


@pytest.mark.parametrize("device", ["CPU", "GPU", "GPU.1", "AUTO", "AUTO:GPU,CPU", "AUTO:GPU.1,CPU", "AUTO:NPU,CPU", "NPU"])
def test_devices_openvino_takes_load(tmp_path, device):
    text = PI.replace("backends: [onnxruntime]", "backends: [openvino]").replace("device: CPU", f"device: {device!r}")
    assert _load(tmp_path, text).device == device


@pytest.mark.parametrize("device, written", [("cpu", "CPU"), ("gpu", "GPU"), ("AUTO:gpu,cpu", "AUTO:GPU,CPU")])
def test_a_lower_case_device_means_the_device(tmp_path, device, written):
    # `gpu` loaded for TensorRT before the OpenVINO name check; OpenVINO itself takes capitals only
    text = PI.replace("backends: [onnxruntime]", "backends: [openvino]").replace("device: CPU", f"device: {device!r}")
    assert _load(tmp_path, text).device == written


@pytest.mark.parametrize("device, backends, unfit", [
    ("AUTO", "[onnxruntime]", "onnxruntime"),
    ("DLA", "[openvino]", "openvino"),
    ("DLA", "[tensorrt, onnxruntime]", "onnxruntime"),
    ("NPU", "[tensorrt]", "tensorrt"),
    ("NPU", "[onnxruntime]", "onnxruntime"),
    ("CPU", "[tensorrt]", "tensorrt"),
    ("AUTO", "[tensorrt]", "tensorrt"),
])
def test_a_device_the_backends_cannot_run_on_is_refused(tmp_path, device, backends, unfit):
    text = PI.replace("backends: [onnxruntime]", f"backends: {backends}").replace("device: CPU", f"device: {device}")
    error = _refused(tmp_path, text, f"backend {unfit} cannot run on device {device}")
    assert unfit in error.fix


@pytest.mark.parametrize("device, backends", [("DLA", "[tensorrt]"), ("GPU", "[tensorrt, onnxruntime]"), ("NPU", "[openvino]"),
                                              ("CPU", "[onnxruntime, openvino]"), ("GPU", "[openvino]")])
def test_devices_that_fit_their_backends_load(tmp_path, device, backends):
    text = PI.replace("backends: [onnxruntime]", f"backends: {backends}").replace("device: CPU", f"device: {device}")
    assert _load(tmp_path, text).device == device


@pytest.mark.parametrize("text, problem, line, column", [
    (PI.replace("precisions: [fp32, int8]", "precisions: [fp32, int8"), "expected ',' or ']'", 6, 7),
    (PI.replace("description: Raspberry", 'description: "Raspberry'), "found unexpected end of stream", 11, 1),
    (PI.replace("device: CPU", "device:CPU"), "could not find expected ':'", 7, 1),
])
def test_a_yaml_syntax_error_says_what_and_where(tmp_path, text, problem, line, column):
    """Only 'while scanning a quoted scalar' was kept: neither what was wrong nor where."""
    error = _refused(tmp_path, text, "is not valid YAML")
    assert problem in error.cause and f"line {line}, column {column}" in error.cause


def test_the_unknown_key_hint_lists_only_fields_a_profile_can_set(tmp_path):
    error = _refused(tmp_path, PI + "peak_tflops_f16: 0.3\n", "unknown config key .*peak_tflops_f16")
    suggested = error.fix.removeprefix("valid keys here: ").split(", ")
    assert {"arch", "device", "peak_tflops_fp16", "notes"} <= set(suggested)
    assert not {"source", "given_as_file"} & set(suggested)


def test_notes_are_free_text_kept_with_the_profile(tmp_path):
    assert _load(tmp_path, PI + "notes: bought 2024, fan case\n").notes == "bought 2024, fan case"


def test_the_readme_documents_every_field_a_profile_can_set():
    import dataclasses
    from pathlib import Path

    from edgedistill.targets import TargetProfile

    section = (Path(__file__).parents[1] / "README.md").read_text().split("### Targets")[1].split("\n### ")[0]
    table = {name for row in section.splitlines() if row.startswith("| `") for name in re.findall(r"`(\w+)`", row.split("|")[1])}
    assert table == {f.name for f in dataclasses.fields(TargetProfile) if f.compare}
