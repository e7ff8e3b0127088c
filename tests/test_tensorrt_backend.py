"""TensorRTBackend availability and the runner's tag check (TensorRT itself is faked where it cannot run)."""

from __future__ import annotations

import importlib
import pkgutil
import sys
import types

import numpy as np
import pytest

import edgedistill.backends as backends_pkg
from edgedistill.backends import get_backend, trt_env, trt_runner
from edgedistill.backends.tensorrt_backend import TensorRTBackend
from edgedistill.backends.trt_env import CudaDevice
from edgedistill.backends.trt_tag import engine_tag, write_engine_tag
from edgedistill.errors import EdgedistillError


def fake_tensorrt(version="10.3.0.30", **extra):
    """A stand-in `tensorrt` module: TensorRT cannot be installed on this machine."""
    module = types.ModuleType("tensorrt")
    module.__version__ = version
    module.__dict__.update(extra)
    return module


def test_every_trt_module_imports_without_tensorrt(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    names = [m.name for m in pkgutil.iter_modules(backends_pkg.__path__) if m.name.startswith(("trt_", "tensorrt"))]
    assert len(names) >= 10
    for name in names:
        importlib.import_module(f"edgedistill.backends.{name}")


def test_unavailable_without_tensorrt_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    ok, reason = get_backend("tensorrt").availability()
    assert ok is False and reason == "TensorRT is not installed (pip install 'edgedistill[tensorrt]')"
    with pytest.raises(EdgedistillError, match=r"edgedistill\[tensorrt\]"):
        TensorRTBackend().runner("model.engine")


def test_unavailable_without_a_cuda_device(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", fake_tensorrt())
    monkeypatch.setattr("edgedistill.backends.tensorrt_backend.cuda_device", lambda: None)
    ok, reason = TensorRTBackend().availability()
    assert ok is False and "no CUDA device" in reason


def test_broken_tensorrt_install_is_reported_not_raised(monkeypatch):
    real = importlib.import_module

    def broken(name, *args):
        if name == "tensorrt":
            raise OSError("libnvinfer.so.10: cannot open shared object file")
        return real(name, *args)

    monkeypatch.setattr(trt_env.importlib, "import_module", broken)
    ok, reason = TensorRTBackend().availability()
    assert ok is False and "failed to load: libnvinfer.so.10" in reason


def test_available_with_tensorrt_and_a_gpu(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", fake_tensorrt())
    monkeypatch.setattr("edgedistill.backends.tensorrt_backend.cuda_device", lambda: CudaDevice("Orin", "8.7"))
    assert TensorRTBackend().availability() == (True, "")


def test_runner_checks_the_tag_before_deserializing(tmp_path, monkeypatch):
    calls = []

    class Runtime:  # records whether deserialization was ever attempted
        def __init__(self, logger):
            calls.append("runtime")

        def deserialize_cuda_engine(self, data):
            calls.append("deserialize")

    class Logger:
        WARNING = 2

        def __init__(self, severity):
            pass

    monkeypatch.setitem(sys.modules, "tensorrt", fake_tensorrt(version="10.7.0.23", Runtime=Runtime, Logger=Logger))
    monkeypatch.setattr(trt_runner, "current_tag", lambda: engine_tag("10.7.0.23", "Orin", "8.7"))
    engine = tmp_path / "fp16.engine"
    engine.write_bytes(b"engine built by an older TensorRT")
    write_engine_tag(engine, engine_tag("10.3.0.30", "Orin", "8.7"))
    runner = trt_runner.TensorRTRunner(engine)
    with pytest.raises(EdgedistillError, match="built with TensorRT 10.3.0.30, this machine has TensorRT 10.7.0.23"):
        runner.activate()
    assert calls == [] and runner.is_active is False


class RangedEngine:
    """A deserialized engine with one input whose batch is `low..high` in profile 0 (fixed when static)."""

    num_io_tensors = 2

    def __init__(self, low: int, high: int, static: bool):
        self.low, self.high, self.static = low, high, static

    def get_tensor_name(self, index):
        return ("input", "embedding")[index]

    def get_tensor_mode(self, name):
        return "INPUT" if name == "input" else "OUTPUT"

    def get_tensor_dtype(self, name):
        return "float"

    def get_tensor_shape(self, name):
        return (self.low if self.static else -1, 3)

    def get_tensor_profile_shape(self, name, index):
        return [(self.low, 3), (self.low, 3), (self.high, 3)]

    def create_execution_context(self):
        self.context = RangedContext(self)
        return self.context


class RangedContext:
    """Refuses shapes outside the profile (set_input_shape returns False, as TensorRT's does); doubles the input."""

    def __init__(self, engine):
        self.engine, self.addresses, self.batches, self.shape = engine, {}, [], None

    def set_input_shape(self, name, shape):
        self.shape = shape
        return self.engine.low <= shape[0] <= self.engine.high

    def set_tensor_address(self, name, array):
        self.addresses[name] = array

    def get_tensor_shape(self, name):
        return self.shape

    def execute_async_v3(self, stream):
        self.addresses["embedding"][...] = self.addresses["input"] * 2
        self.batches.append(self.shape[0])
        return True


class HostBuffers:
    """trt_buffers' interface on host memory: the 'pointer' handed to the context is the array itself."""

    stream = 0

    def upload(self, array):
        return array

    def ptr(self, handle):
        return handle

    def empty(self, shape, dtype):
        return np.empty(shape, dtype)

    def download(self, handle):
        return handle.copy()

    def release(self):
        pass

    def close(self):
        pass


def fake_runner_setup(tmp_path, monkeypatch, runtime_cls, record: dict) -> None:
    """A fake `tensorrt` around `runtime_cls`, a tag check that passes, the engine record `record`,
    host buffers, and tmp_path/fp16.engine to open."""

    class Logger:
        WARNING = 2

        def __init__(self, severity):
            pass

    trt = fake_tensorrt(Runtime=runtime_cls, Logger=Logger, TensorIOMode=types.SimpleNamespace(INPUT="INPUT"), nptype=lambda dtype: np.float32)
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    monkeypatch.setattr(trt_runner, "check_engine_tag", lambda path, tag: None)
    monkeypatch.setattr(trt_runner, "current_tag", lambda: None)
    monkeypatch.setattr(trt_runner, "read_engine_tag", lambda path: record)
    monkeypatch.setattr(trt_runner, "make_buffers", HostBuffers)
    (tmp_path / "fp16.engine").write_bytes(b"engine")


@pytest.mark.parametrize(("low", "high", "static", "rows", "batches"), [
    (1, 8, False, 20, [8, 8, 4]),  # Jetson GPU targets: batch_max 8
    (1, 1, True, 3, [1, 1, 1]),  # DLA: a static batch of 1
    (4, 4, True, 10, [4, 4, 4]),  # static batch 4: the short last chunk is padded
    (2, 8, False, 9, [8, 2]),
])
def test_infer_all_feeds_the_engine_only_batches_its_profile_takes(tmp_path, monkeypatch, low, high, static, rows, batches):
    engine = RangedEngine(low, high, static)

    class Runtime:
        def __init__(self, logger):
            pass

        def deserialize_cuda_engine(self, data):
            return engine

    fake_runner_setup(tmp_path, monkeypatch, Runtime, record={})
    x = np.random.default_rng(0).standard_normal((rows, 3)).astype(np.float32)
    with trt_runner.TensorRTRunner(tmp_path / "fp16.engine") as runner:
        assert runner.batch_limits() == (low, high)
        out = runner.infer_all(x)
        with pytest.raises(EdgedistillError, match="outside the engine's profile"):
            runner.infer({"input": np.zeros((high + 1, 3), np.float32)})
    assert engine.context.batches == batches
    np.testing.assert_array_equal(out["embedding"], x * 2)


@pytest.mark.parametrize(("dla_core", "cores", "expected"), [(1, 2, 1), (None, 2, None), (1, 0, "error")])
def test_runner_sets_the_dla_core_the_engine_was_built_for(tmp_path, monkeypatch, dla_core, cores, expected):
    runtimes = []

    class Runtime:  # TensorRT's IRuntime: DLA_core must be set before deserializing
        num_DLA_cores = cores

        def __init__(self, logger):
            self.DLA_core, self.core_at_deserialize = None, "never"
            runtimes.append(self)

        def deserialize_cuda_engine(self, data):
            self.core_at_deserialize = self.DLA_core
            return RangedEngine(1, 1, True)

    fake_runner_setup(tmp_path, monkeypatch, Runtime, record={"build": {"dla_core": dla_core}})
    runner = trt_runner.TensorRTRunner(tmp_path / "fp16.engine")
    if expected == "error":
        with pytest.raises(EdgedistillError, match="built for DLA core 1, this device has 0 DLA core"):
            runner.activate()
        assert runtimes[0].core_at_deserialize == "never"
        return
    with runner:
        assert runner.runtime_settings()["dla_core"] == dla_core
    assert runtimes[0].core_at_deserialize == expected


def test_a_jetson_without_tensorrt_is_told_about_jetpacks_not_the_pip_extra(monkeypatch):
    """The bundle's README says not to install the [tensorrt] extra on a Jetson; the error must agree."""
    import platform

    from edgedistill.backends.trt_env import import_tensorrt
    from edgedistill.errors import MissingBackendError

    monkeypatch.setitem(sys.modules, "tensorrt", None)  # not importable, as in a venv that cannot see JetPack's
    monkeypatch.setattr(platform, "machine", lambda: "aarch64")
    with pytest.raises(MissingBackendError) as error:
        import_tensorrt("compiling a TensorRT bundle")
    assert "python3-libnvinfer" in error.value.fix and "--system-site-packages" in error.value.fix
    monkeypatch.setattr(platform, "machine", lambda: "x86_64")
    with pytest.raises(MissingBackendError) as error:
        import_tensorrt("compiling a TensorRT bundle")
    assert error.value.fix == "pip install 'edgedistill[tensorrt]'"
