"""OpenVINO backend: converts ONNX to IR (FP32/FP16) and runs IR with explicit precision hints.

OpenVINO's CPU plugin silently runs bf16 on CPUs with AVX512-BF16/AMX unless told otherwise;
we always set INFERENCE_PRECISION_HINT ourselves and record it.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from ..errors import MissingBackendError
from .base import Backend, Runner


def _import_ov():
    try:
        import openvino
    except ImportError as exc:
        raise MissingBackendError("openvino", None, "the OpenVINO backend") from exc
    return openvino


def convert_to_ir(onnx_path: Path, xml_path: Path, fp16_weights: bool = False) -> Path:
    """ONNX -> OpenVINO IR (.xml + .bin). FP16 compresses weights; compute precision is a runtime hint."""
    ov = _import_ov()
    model = ov.convert_model(str(onnx_path))
    xml_path.parent.mkdir(parents=True, exist_ok=True)
    ov.save_model(model, str(xml_path), compress_to_fp16=fp16_weights)
    return xml_path


class OpenVinoRunner(Runner):
    def __init__(self, model_path: Path, device: str = "CPU", threads: int | None = None, precision_hint: str = "f32"):
        super().__init__(f"openvino:{Path(model_path).name}")
        self.model_path = Path(model_path)
        self.device = device
        self.threads = threads
        self.precision_hint = precision_hint
        self.compiled = None
        self.request = None

    def _activate_impl(self) -> None:
        ov = _import_ov()
        core = ov.Core()
        config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": self.precision_hint}
        if self.threads:
            config["INFERENCE_NUM_THREADS"] = self.threads
        self.compiled = core.compile_model(str(self.model_path), self.device, config)
        self.request = self.compiled.create_infer_request()

    def _deactivate_impl(self) -> None:
        self.request = None
        self.compiled = None

    def _infer_impl(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        results = self.request.infer(feeds)
        return {output.get_any_name(): np.asarray(value) for output, value in results.items()}

    def _input_names_impl(self) -> list[str]:
        return [i.get_any_name() for i in self.compiled.inputs]

    def runtime_settings(self) -> dict:
        if self.compiled is None:
            return {}
        return {
            "device": self.device,
            "INFERENCE_PRECISION_HINT": str(self.compiled.get_property("INFERENCE_PRECISION_HINT")),
            "INFERENCE_NUM_THREADS": int(self.compiled.get_property("INFERENCE_NUM_THREADS")),
            "PERFORMANCE_HINT": str(self.compiled.get_property("PERFORMANCE_HINT")),
        }


class OpenVinoBackend(Backend):
    name = "openvino"

    def availability(self) -> tuple[bool, str]:
        if importlib.util.find_spec("openvino") is None:
            return False, "openvino is not installed (pip install openvino)"
        return True, ""

    def runner(self, model_path: Path, *, device: str = "CPU", threads: int | None = None, precision_hint: str = "f32", **options) -> OpenVinoRunner:
        return OpenVinoRunner(model_path, device=device, threads=threads, precision_hint=precision_hint)
