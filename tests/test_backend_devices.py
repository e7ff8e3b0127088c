"""Which devices each backend reports here (so GPU/NPU/DLA targets get measured on the device), and
infer_all keeping to the batch range a runner accepts. Accelerators are faked: this host has none."""

from __future__ import annotations

import sys
import types

import numpy as np
import onnxruntime
import openvino
import pytest

from edgedistill.artifacts import Artifact
from edgedistill.backends import get_backend, onnxruntime_backend, openvino_backend, trt_env
from edgedistill.backends.base import Runner
from edgedistill.backends.trt_env import CudaDevice
from edgedistill.bench import measure as bench_measure
from edgedistill.errors import EdgedistillError
from edgedistill.targets import load_target


@pytest.fixture(autouse=True)
def fresh_device_queries():
    """The slow device queries are cached per process; each test sets up its own host."""
    openvino_backend.available_devices.cache_clear()
    trt_env.dla_cores.cache_clear()
    yield
    openvino_backend.available_devices.cache_clear()
    trt_env.dla_cores.cache_clear()


def fake_ov_core(monkeypatch, devices, calls=None):
    class Core:
        def __init__(self):
            if calls is not None:
                calls.append("core")

        available_devices = list(devices)

    monkeypatch.setattr(openvino, "Core", Core)


def fake_trt_host(monkeypatch, dla_cores=0, gpu=True):
    """A `tensorrt` whose builder reports `dla_cores`, on a host with or without a CUDA device."""

    class Logger:
        WARNING = 2

        def __init__(self, severity):
            pass

    class Builder:
        num_DLA_cores = dla_cores

        def __init__(self, logger):
            pass

    module = types.ModuleType("tensorrt")
    module.__version__, module.Builder, module.Logger = "10.3.0.30", Builder, Logger
    monkeypatch.setitem(sys.modules, "tensorrt", module)
    monkeypatch.setattr("edgedistill.backends.tensorrt_backend.cuda_device", lambda: CudaDevice("Orin", "8.7") if gpu else None)


@pytest.mark.parametrize(("providers", "expected"), [
    (["CPUExecutionProvider"], ["CPU"]),
    (["CUDAExecutionProvider", "CPUExecutionProvider"], ["CPU", "GPU"]),
    (["TensorrtExecutionProvider", "CPUExecutionProvider"], ["CPU", "GPU"]),
])
def test_onnxruntime_reports_a_gpu_only_with_a_gpu_provider(monkeypatch, providers, expected):
    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: providers)
    assert get_backend("onnxruntime").devices() == expected


def test_onnxruntime_gpu_runner_uses_the_provider_devices_counted():
    providers_for = onnxruntime_backend.providers_for
    assert providers_for("GPU", ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]) == ["CUDAExecutionProvider", "CPUExecutionProvider"]
    assert providers_for("gpu", ["TensorrtExecutionProvider", "CPUExecutionProvider"]) == ["TensorrtExecutionProvider", "CPUExecutionProvider"]
    assert providers_for("CPU", ["CUDAExecutionProvider", "CPUExecutionProvider"]) == ["CPUExecutionProvider"]
    with pytest.raises(EdgedistillError, match="no GPU provider") as error:  # not a silent CPU run under a GPU label
        providers_for("GPU", ["CPUExecutionProvider"])
    assert "pip uninstall -y onnxruntime onnxruntime-gpu && pip install onnxruntime-gpu" in error.value.fix


def test_onnxruntime_and_its_gpu_build_installed_together_are_named(monkeypatch):
    """pip install onnxruntime-gpu beside edgedistill's onnxruntime leaves the CPU build's files in place."""
    import importlib.metadata

    versions = {"onnxruntime": "1.32.0", "onnxruntime-gpu": "1.31.1"}

    def version(dist):
        if dist in versions:
            return versions[dist]
        raise importlib.metadata.PackageNotFoundError(dist)

    monkeypatch.setattr(importlib.metadata, "version", version)
    with pytest.raises(EdgedistillError, match="onnxruntime 1.32.0 and onnxruntime-gpu 1.31.1 are both installed") as error:
        onnxruntime_backend.providers_for("GPU", ["AzureExecutionProvider", "CPUExecutionProvider"])
    assert error.value.fix == "keep only the GPU build: pip uninstall -y onnxruntime onnxruntime-gpu && pip install onnxruntime-gpu"


def test_a_gpu_session_that_fell_back_to_the_cpu_is_refused(tmp_path, monkeypatch):
    """onnxruntime-gpu lists CUDA without a usable GPU, then retries on the CPU with a printed note."""
    from .test_bench_fixtures import embedder

    real = onnxruntime.InferenceSession

    def falls_back(path, options, providers, provider_options=None):
        return real(path, options, providers=["CPUExecutionProvider"])

    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    monkeypatch.setattr(onnxruntime, "InferenceSession", falls_back)
    runner = get_backend("onnxruntime").runner(embedder(tmp_path / "m.onnx"), device="GPU")
    with pytest.raises(EdgedistillError, match="could not start CUDAExecutionProvider"):
        with runner:
            pass


def test_openvino_counts_numbered_devices_under_their_family(monkeypatch):
    calls = []
    fake_ov_core(monkeypatch, ["CPU", "GPU.0", "GPU.1", "NPU"], calls)
    backend = get_backend("openvino")
    assert backend.devices() == ["CPU", "GPU.0", "GPU", "GPU.1", "NPU"]
    assert get_backend("openvino").devices() == backend.devices() and calls == ["core"]  # asked once per process


def test_openvino_with_a_broken_plugin_reports_no_device(monkeypatch):
    def broken():
        raise RuntimeError("Failed to load plugin libopenvino_intel_gpu_plugin.so")

    monkeypatch.setattr(openvino, "Core", broken)
    assert get_backend("openvino").devices() == []


@pytest.mark.parametrize(("dla_cores", "gpu", "expected"), [(2, True, ["GPU", "DLA"]), (0, True, ["GPU"]), (2, False, [])])
def test_tensorrt_reports_gpu_and_dla_cores(monkeypatch, dla_cores, gpu, expected):
    fake_trt_host(monkeypatch, dla_cores, gpu)
    assert get_backend("tensorrt").devices() == expected


def test_tensorrt_without_tensorrt_or_a_builder_has_no_dla(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    assert get_backend("tensorrt").devices() == [] and trt_env.dla_cores() == 0
    trt_env.dla_cores.cache_clear()
    fake_trt_host(monkeypatch, dla_cores=2)
    monkeypatch.setattr(sys.modules["tensorrt"], "Builder", lambda logger: 1 / 0)  # e.g. a CUDA init failure
    assert trt_env.dla_cores() == 0 and get_backend("tensorrt").devices() == ["GPU"]


def on_host(monkeypatch, target_name: str):
    """The bundled target, checked as if this host had its CPU architecture."""
    target = load_target(target_name)
    monkeypatch.setattr("edgedistill.targets.platform.machine", lambda: target.arch)
    return target.runs_on_this_host()


def test_accelerator_targets_run_on_their_own_device(monkeypatch):
    fake_ov_core(monkeypatch, ["CPU", "GPU.0"])
    assert on_host(monkeypatch, "intel-gpu") == (True, "")
    assert on_host(monkeypatch, "intel-npu") == (False, "openvino sees no NPU device here (it has: CPU, GPU.0, GPU)")
    fake_trt_host(monkeypatch, dla_cores=2)
    assert on_host(monkeypatch, "jetson-orin-dla") == (True, "")
    assert on_host(monkeypatch, "jetson-orin") == (True, "")
    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    assert on_host(monkeypatch, "nvidia-gpu") == (True, "")


def test_dla_target_does_not_run_on_a_gpu_without_dla(monkeypatch):
    fake_trt_host(monkeypatch, dla_cores=0)
    assert on_host(monkeypatch, "jetson-orin-nano") == (True, "")
    assert on_host(monkeypatch, "jetson-orin-dla") == (False, "tensorrt sees no DLA device here (it has: GPU)")


class RangedRunner(Runner):
    """Doubles its input; rejects batches outside `low..high` as a TensorRT engine's profile does."""

    def __init__(self, low: int = 1, high: int | None = None):
        super().__init__("ranged")
        self.limits, self.batches = (low, high), []

    def _activate_impl(self) -> None:
        return None

    def _infer_impl(self, feeds):
        x = feeds["input"]
        low, high = self.limits
        if len(x) < low or (high is not None and len(x) > high):
            raise RuntimeError(f"batch {len(x)} is outside the profile {low}..{high}")
        self.batches.append(len(x))
        return {"embedding": x.reshape(len(x), -1) * 2}

    def _input_names_impl(self):
        return ["input"]

    def batch_limits(self):
        return self.limits


@pytest.mark.parametrize(("limits", "rows", "batches"), [
    ((1, None), 40, [16, 16, 8]),  # no profile: chunks of 16 as before
    ((1, 8), 20, [8, 8, 4]),  # Jetson GPU targets
    ((1, 1), 3, [1, 1, 1]),  # DLA: one fixed batch
    ((4, 4), 10, [4, 4, 4]),  # a static batch of 4: the last 2 rows are padded, their outputs dropped
    ((2, 8), 9, [8, 2]),
])
def test_infer_all_keeps_to_the_runners_batch_range(limits, rows, batches):
    x = np.random.default_rng(0).standard_normal((rows, 3, 2, 2)).astype(np.float32)
    with RangedRunner(*limits) as runner:
        out = runner.infer_all(x)
    assert runner.batches == batches
    np.testing.assert_array_equal(out["embedding"], x.reshape(rows, -1) * 2)


def test_bench_fidelity_runs_on_an_engine_that_takes_at_most_8(tmp_path, monkeypatch):
    (tmp_path / "fp16.engine").write_bytes(b"engine")
    backend = types.SimpleNamespace(runner=lambda path, **options: RangedRunner(1, 8), devices=lambda: ["GPU"])
    monkeypatch.setattr(bench_measure, "get_backend", lambda name: backend)
    x = np.random.default_rng(1).standard_normal((20, 3, 2, 2)).astype(np.float32)
    plan = bench_measure.Plan(x, {"embedding": x.reshape(20, -1) * 2}, None, warmup=0, iterations=1, time_budget_s=None,
                              batch=1, batch_sizes=[1], threads=None)
    artifact = Artifact(kind="trt-engine", path="fp16.engine", name="fp16", backend="tensorrt", precision="fp16")
    row = bench_measure.measure(artifact, tmp_path, "GPU", plan, timed=False)
    assert row.get("status") != "failed", row.get("notes")
    assert row["fidelity"]["samples"] == 20 and row["fidelity"]["cosine_vs_fp32"] == pytest.approx(1.0)


def test_gpu_n_runs_onnxruntime_on_that_cuda_device():
    from edgedistill.bench.estimate.apply import qdq_fused

    cuda = ["CUDAExecutionProvider", "CPUExecutionProvider"]
    providers = onnxruntime_backend.providers_for("GPU.1", cuda)
    assert providers == cuda and onnxruntime_backend.provider_options_for("GPU.1", providers) == [{"device_id": 1}, {}]
    assert onnxruntime_backend.provider_options_for("GPU", providers) == [{}, {}]
    assert not qdq_fused("onnxruntime", "GPU.1")  # the CUDA provider's unfused QDQ, as on GPU
