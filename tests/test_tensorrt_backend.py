"""TensorRTBackend availability and the runner's tag check (TensorRT itself is faked where it cannot run)."""

from __future__ import annotations

import importlib
import pkgutil
import sys
import types

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
