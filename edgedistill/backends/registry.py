"""Name -> Backend lookup. Modules are imported on first use so a missing runtime costs nothing."""

from __future__ import annotations

import importlib

from ..errors import EdgedistillError
from .base import Backend

_MODULES = {
    "onnxruntime": ("edgedistill.backends.onnxruntime_backend", "OnnxRuntimeBackend"),
    "openvino": ("edgedistill.backends.openvino_backend", "OpenVinoBackend"),
    "tensorrt": ("edgedistill.backends.tensorrt_backend", "TensorRTBackend"),
}


def backend_names() -> tuple[str, ...]:
    return tuple(_MODULES)


def get_backend(name: str) -> Backend:
    if name not in _MODULES:
        raise EdgedistillError(f"unknown backend '{name}'", f"choose one of: {', '.join(_MODULES)}")
    module_name, class_name = _MODULES[name]
    return getattr(importlib.import_module(module_name), class_name)()


def available_backends() -> dict[str, tuple[bool, str]]:
    return {name: get_backend(name).availability() for name in _MODULES}
