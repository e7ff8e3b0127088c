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
