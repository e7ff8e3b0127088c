"""Every bundled target profile loads by name and is self-consistent."""

from __future__ import annotations

import re

import pytest

from edgedistill.backends.registry import _MODULES
from edgedistill.backends.trt_support import max_opset, parse_version
from edgedistill.profiles import bundled_names
from edgedistill.targets import load_target

EXPECTED = {"jetson-orin", "jetson-orin-dla", "jetson-orin-jp5", "jetson-orin-nx", "jetson-orin-nano",
            "intel-gpu", "intel-npu", "arm64-cpu", "nvidia-gpu", "x86-cpu"}


def test_the_new_targets_are_bundled():
    assert EXPECTED <= set(bundled_names("targets"))


@pytest.mark.parametrize("name", sorted(bundled_names("targets")))
def test_target_loads_and_is_consistent(name):
    target = load_target(name)
    assert target.name == name and target.description
    assert target.arch in ("x86_64", "aarch64")
    assert target.backends and set(target.backends) <= set(_MODULES)
    assert set(target.precisions) <= {"fp32", "fp16", "int8", "best"}
    assert target.device in ("CPU", "GPU", "NPU", "DLA", "AUTO")
    assert 1 <= target.batch_min <= target.batch_opt <= target.batch_max
    for figure in (target.peak_tflops_fp32, target.peak_tflops_fp16, target.peak_tops_int8, target.bandwidth_gbs):
        assert figure is None or figure > 0
    if name != "x86-cpu":  # x86-cpu detects its ISA at run time; the others name published figures
        assert target.bandwidth_gbs and target.peak_tops_int8
    if "tensorrt" in target.backends:
        version = parse_version(target.tensorrt_version)
        assert version is not None and max_opset(version) >= target.opset
    else:
        assert target.dla_core is None and target.tensorrt_version is None
    if target.dla_core is not None:
        assert target.device == "DLA" and target.batch_min == target.batch_max
        assert "fp32" not in target.precisions  # DLA runs FP16/INT8 only


def test_published_figures():
    orin, nx, nano = load_target("jetson-orin"), load_target("jetson-orin-nx"), load_target("jetson-orin-nano")
    assert orin.bandwidth_gbs == 204.8 and nx.bandwidth_gbs == 102.4 and nano.bandwidth_gbs == 68.0
    assert orin.peak_tops_int8 > nx.peak_tops_int8 > nano.peak_tops_int8
    assert {t.jetpack for t in (orin, nx, nano)} == {"6.1"} and {t.tensorrt_version for t in (orin, nx, nano)} == {"10.3"}
    assert load_target("jetson-orin-jp5").tensorrt_version == "8.5" and load_target("jetson-orin-jp5").opset == 16
    assert load_target("intel-npu").device == "NPU" and load_target("intel-gpu").device == "GPU"
    assert load_target("arm64-cpu").arch == "aarch64" and load_target("arm64-cpu").backends == ("onnxruntime",)
    assert load_target("nvidia-gpu").backends == ("tensorrt", "onnxruntime")


def test_a_profile_keys_stages_by_its_content_not_by_where_it_was_read(tmp_path):
    """A build folder copied to a device and back reloads its profile from BUILD/target.yaml."""
    from pathlib import Path

    from edgedistill.pipeline import _key

    text = (Path(__file__).parents[1] / "targets" / "x86-cpu.yaml").read_text()
    (tmp_path / "a.yaml").write_text(text)
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "target.yaml").write_text(text)
    first, second = load_target(str(tmp_path / "a.yaml")), load_target(str(tmp_path / "b" / "target.yaml"))
    assert first.source != second.source and _key(first) == _key(second) == _key(load_target("x86-cpu"))
    (tmp_path / "c.yaml").write_text(text.replace("min_cosine: 0.98", "min_cosine: 0.5"))
    assert _key(load_target(str(tmp_path / "c.yaml"))) != _key(first)


@pytest.mark.parametrize("change, cause", [
    (("device: CPU", "device: CPUU"), "device is 'CPUU'"),  # built everything, then selected nothing, exit 0
    (("arch: x86_64", "arch: x86"), "arch is 'x86'"),
    (("backends: [onnxruntime, openvino]", "backends: [onnxruntime, openvno]"), "backends has 'openvno'"),  # found after distillation
    (("precisions: [fp32, int8]", "precisions: [fp32, int4]"), "precisions has 'int4'"),
    (("backends: [onnxruntime, openvino]", "backends: []"), "backends is empty"),
    (("bench_iterations: 100", "bench_iterations: 0"), "bench_iterations 0"),  # an IndexError in every row
    (("batch_max: 8", "batch_max: 0"), "not 1 <= min <= opt <= max"),
    (("min_cosine: 0.98", "min_cosine: 2"), "outside [0, 1]"),
])
def test_a_profile_setting_it_cannot_mean_is_refused_when_it_loads(tmp_path, change, cause):
    from pathlib import Path

    from edgedistill.errors import EdgedistillError

    text = (Path(__file__).parents[1] / "targets" / "x86-cpu.yaml").read_text()
    assert change[0] in text
    (tmp_path / "mine.yaml").write_text(text.replace(change[0], change[1]))
    with pytest.raises(EdgedistillError, match=re.escape(cause)) as error:
        load_target(str(tmp_path / "mine.yaml"))
    assert error.value.fix
    for device in ("GPU.1", "AUTO:GPU,CPU"):  # OpenVINO's device indices and lists stay valid
        ov_only = text.replace("backends: [onnxruntime, openvino]", "backends: [openvino]")
        (tmp_path / "ov.yaml").write_text(ov_only.replace("device: CPU", f"device: {device}"))
        assert load_target(str(tmp_path / "ov.yaml")).device == device


def test_openvino_device_indices_and_lists_run_where_their_family_is(monkeypatch):
    """AUTO:CPU passed the profile check and then never ran on a CPU host: every row stayed pending."""
    import dataclasses

    from edgedistill.backends.openvino_backend import OpenVinoBackend

    monkeypatch.setattr(OpenVinoBackend, "devices", lambda self: ["CPU"])
    target = dataclasses.replace(load_target("x86-cpu"), backends=("openvino",))
    for device in ("AUTO:CPU", "AUTO:GPU,CPU", "CPU", "AUTO"):
        assert dataclasses.replace(target, device=device).why_backend_cannot_run_here("openvino") == "", device
    for device in ("GPU.1", "AUTO:GPU", "NPU"):
        assert "sees no" in dataclasses.replace(target, device=device).why_backend_cannot_run_here("openvino"), device


def test_a_profile_named_by_its_path_is_kept_even_inside_the_bundled_folder(tmp_path, monkeypatch):
    """In an editable install the checkout's targets/ is the bundled folder: a user's my-device.yaml there
    was looked up by name later, and the device the build folder went to did not know it."""
    from pathlib import Path

    from edgedistill import pipeline
    from edgedistill.config import load_config

    shipped = tmp_path / "targets"
    shipped.mkdir()
    (shipped / "my-device.yaml").write_text((Path(__file__).parents[1] / "targets" / "x86-cpu.yaml").read_text().replace("name: x86-cpu", "name: my-device"))
    monkeypatch.setattr(pipeline, "bundled_dir", lambda kind: tmp_path / kind)
    build = tmp_path / "build"
    pipe = pipeline.Pipeline(load_config(), load_target(str(shipped / "my-device.yaml")), build)
    assert (build / "target.yaml").is_file() and pipe.manifest.data["target_file"] == "target.yaml"
    assert not load_target("x86-cpu").given_as_file
