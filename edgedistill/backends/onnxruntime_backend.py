"""ONNX Runtime backend: runs .onnx files (fp32 or QDQ int8) on the CPU or a GPU provider."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from ..device_names import device_family, device_index
from ..errors import EdgedistillError, MissingBackendError
from .base import Backend, Runner

# GPU providers in order of preference: CUDA runs the graph as exported; the TensorRT provider
# (only used when CUDA's is absent) builds its own engines on first run.
GPU_PROVIDERS = ("CUDAExecutionProvider", "TensorrtExecutionProvider")


def _import_ort():
    try:
        import onnxruntime
    except ImportError as exc:
        raise MissingBackendError("onnxruntime", None, "the ONNX Runtime backend") from exc
    return onnxruntime


def gpu_provider(available: list[str]) -> str | None:
    """The GPU provider a GPU runner uses, from ort.get_available_providers(); None when there is none."""
    return next((p for p in GPU_PROVIDERS if p in available), None)


def providers_for(device: str, available: list[str]) -> list[str]:
    """Session providers for `device` (GPU, GPU.1, ...); GPU without a GPU provider is an error, not a silent CPU run."""
    if device_family(device) != "GPU":
        return ["CPUExecutionProvider"]
    gpu = gpu_provider(available)
    if gpu is None:
        raise _no_gpu_provider(available)
    return [gpu, "CPUExecutionProvider"]


def provider_options_for(device: str, providers: list[str]) -> list[dict]:
    """Each provider's options: GPU.N runs on CUDA device N (the CUDA and TensorRT providers' device_id)."""
    index = device_index(device)
    return [{"device_id": index} if index is not None and name != "CPUExecutionProvider" else {} for name in providers]


def _no_gpu_provider(available: list[str]) -> EdgedistillError:
    """onnxruntime and onnxruntime-gpu install into one `onnxruntime` package, and edgedistill needs the
    first: installing the second beside it leaves whichever files landed last, often the CPU build's."""
    from importlib.metadata import PackageNotFoundError, version

    def installed(dist: str) -> str | None:
        try:
            return version(dist)
        except PackageNotFoundError:
            return None

    swap = "pip uninstall -y onnxruntime onnxruntime-gpu && pip install onnxruntime-gpu"
    if installed("onnxruntime") and installed("onnxruntime-gpu"):
        return EdgedistillError(f"onnxruntime {installed('onnxruntime')} and onnxruntime-gpu {installed('onnxruntime-gpu')} are both installed "
                                f"and share one package, whose files are the CPU build's (providers: {', '.join(available)})",
                                f"keep only the GPU build: {swap}")
    return EdgedistillError(f"this ONNX Runtime has no GPU provider (it has: {', '.join(available)})",
                            f"on a machine with an NVIDIA GPU, replace it with the GPU build: {swap}; or run on the CPU")


class OnnxRuntimeRunner(Runner):
    def __init__(self, model_path: Path, device: str = "CPU", threads: int | None = None):
        super().__init__(f"onnxruntime:{Path(model_path).name}")
        self.model_path = Path(model_path)
        self.device = device
        self.threads = threads
        self.session = None

    def _activate_impl(self) -> None:
        ort = _import_ort()
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if self.threads:
            options.intra_op_num_threads = self.threads
            options.inter_op_num_threads = 1
        providers = providers_for(self.device, ort.get_available_providers())
        self.session = ort.InferenceSession(str(self.model_path), options, providers=providers,
                                            provider_options=provider_options_for(self.device, providers))
        if providers[0] not in self.session.get_providers():
            # ORT retries on the CPU, with only a printed message, when the GPU provider fails to load
            # (no driver, wrong CUDA/cuDNN): that must not be timed and recorded as a GPU measurement
            raise EdgedistillError(f"ONNX Runtime could not start {providers[0]} (the session has {', '.join(self.session.get_providers())})",
                                   "check the NVIDIA driver and the CUDA/cuDNN versions onnxruntime-gpu needs, or run on the CPU")

    def _deactivate_impl(self) -> None:
        self.session = None

    def _infer_impl(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        names = [o.name for o in self.session.get_outputs()]
        return dict(zip(names, self.session.run(names, feeds)))

    def _input_names_impl(self) -> list[str]:
        return [i.name for i in self.session.get_inputs()]

    def runtime_settings(self) -> dict:
        return {"providers": self.session.get_providers() if self.session else [], "intra_op_num_threads": self.threads or "default"}


class OnnxRuntimeBackend(Backend):
    name = "onnxruntime"

    def availability(self) -> tuple[bool, str]:
        if importlib.util.find_spec("onnxruntime") is None:
            return False, "onnxruntime is not installed (pip install onnxruntime)"
        return True, ""

    def devices(self) -> list[str]:
        if not self.is_available():
            return []
        return ["CPU", "GPU"] if gpu_provider(_import_ort().get_available_providers()) else ["CPU"]

    def runner(self, model_path: Path, *, device: str = "CPU", threads: int | None = None, **options) -> OnnxRuntimeRunner:
        return OnnxRuntimeRunner(model_path, device=device, threads=threads)
