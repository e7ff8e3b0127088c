import importlib.metadata
import sys

from edgedistill import versions


def test_onnxruntime_gpu_and_module_only_installs_are_recorded(monkeypatch, tmp_path):
    installed = {"onnxruntime-gpu": "1.31.1", "numpy": "2.0.0"}

    def version(name):
        if name not in installed:
            raise importlib.metadata.PackageNotFoundError(name)
        return installed[name]

    monkeypatch.setattr(importlib.metadata, "version", version)
    # JetPack 5's Debian bindings: a module with no Python metadata, not imported yet. Bench's key holds these
    # versions, so the version must not depend on whether earlier code happened to import it.
    (tmp_path / "tensorrt.py").write_text('__version__ = "8.5.2.2"\n')
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "tensorrt", raising=False)
    try:
        found = versions.tool_versions(("onnxruntime", "tensorrt", "numpy", "no_such_runtime"))
    finally:
        sys.modules.pop("tensorrt", None)
    assert found["onnxruntime"] == "1.31.1" and found["tensorrt"] == "8.5.2.2" and found["numpy"] == "2.0.0"
    assert "no_such_runtime" not in found
