"""Versions of the tools that touched an artifact, recorded in manifests and reports."""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import platform

_TRACKED = ("edgedistill", "torch", "timm", "onnx", "onnxruntime", "openvino", "nncf", "onnxslim", "tensorrt", "numpy")
# The other distributions that install the same module: README's NVIDIA setup swaps onnxruntime for
# onnxruntime-gpu, and TensorRT's wheels are named by CUDA version
_ALSO_SHIPPED_AS = {
    "onnxruntime": ("onnxruntime-gpu", "onnxruntime-openvino", "onnxruntime-directml", "onnxruntime-training"),
    "tensorrt": ("tensorrt-cu13", "tensorrt-cu12", "tensorrt-cu11"),
}


def _version(name: str) -> str | None:
    for distribution in (name, *_ALSO_SHIPPED_AS.get(name, ())):
        try:
            return importlib.metadata.version(distribution)
        except importlib.metadata.PackageNotFoundError:
            continue
    # JetPack's TensorRT bindings (a Debian package) have no Python metadata: the module knows its version.
    # Imported here, not read from whatever was imported before: bench's key holds these versions.
    try:
        if importlib.util.find_spec(name) is None:
            return None
        version = getattr(importlib.import_module(name), "__version__", None)
    except (ImportError, ValueError):
        return None
    return str(version) if version else None


def tool_versions(names: tuple[str, ...] = _TRACKED) -> dict[str, str]:
    """Installed versions of the tracked packages (by whichever distribution installed them); absent ones
    are left out."""
    found = {"python": platform.python_version()}
    for name in names:
        version = _version(name)
        if version is not None:
            found[name] = version
    return found


def newest(versions: list[str | None]) -> str | None:
    """The highest of some version strings (None and unparsable ones ignored)."""
    from packaging.version import InvalidVersion, Version

    parsed = []
    for text in versions:
        try:
            parsed.append((Version(str(text)), text))
        except InvalidVersion:
            continue
    return max(parsed)[1] if parsed else None


def is_newer_than_installed(version: str | None, package: str = "edgedistill") -> bool:
    from packaging.version import InvalidVersion, Version

    installed = tool_versions((package,)).get(package)
    try:
        return version is not None and installed is not None and Version(version) > Version(installed)
    except InvalidVersion:
        return False
