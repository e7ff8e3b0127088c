"""Versions of the tools that touched an artifact, recorded in manifests and reports."""

from __future__ import annotations

import importlib.metadata
import platform

_TRACKED = ("edgedistill", "torch", "timm", "onnx", "onnxruntime", "openvino", "nncf", "onnxslim", "tensorrt", "numpy")


def tool_versions(names: tuple[str, ...] = _TRACKED) -> dict[str, str]:
    """Installed versions of the tracked packages; absent ones are left out."""
    found = {"python": platform.python_version()}
    for name in names:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return found
