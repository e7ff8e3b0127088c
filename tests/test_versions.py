import importlib.metadata
import sys
import types

from edgedistill import versions


def test_onnxruntime_gpu_and_module_only_installs_are_recorded(monkeypatch):
    installed = {"onnxruntime-gpu": "1.31.1", "numpy": "2.0.0"}

    def version(name):
        if name not in installed:
            raise importlib.metadata.PackageNotFoundError(name)
        return installed[name]

    monkeypatch.setattr(importlib.metadata, "version", version)
    monkeypatch.setitem(sys.modules, "tensorrt", types.SimpleNamespace(__version__="8.5.2.2"))  # JetPack 5's Debian bindings
    monkeypatch.delitem(sys.modules, "openvino", raising=False)  # imported by other tests: then its module answers
    found = versions.tool_versions(("onnxruntime", "tensorrt", "numpy", "openvino"))
    assert found["onnxruntime"] == "1.31.1" and found["tensorrt"] == "8.5.2.2" and found["numpy"] == "2.0.0"
    assert "openvino" not in found
