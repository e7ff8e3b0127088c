"""The TensorRT backend: builds engines on an NVIDIA device and runs them.

TensorRT is optional: nothing here imports it until asked, and when it is absent the backend
reports why (and which pip extra fixes it) instead of raising an ImportError.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import EdgedistillError, MissingBackendError
from .base import Backend, Runner
from .trt_env import EXTRA_HINT, cuda_device, dla_cores, import_tensorrt


class TensorRTBackend(Backend):
    name = "tensorrt"

    def availability(self) -> tuple[bool, str]:
        try:
            import_tensorrt()
        except MissingBackendError:
            return False, f"TensorRT is not installed ({EXTRA_HINT})"
        except EdgedistillError as exc:
            return False, exc.one_line()
        if cuda_device() is None:
            return False, "no CUDA device is visible (TensorRT needs an NVIDIA GPU or a Jetson)"
        return True, ""

    def devices(self) -> list[str]:
        """GPU when usable (availability needs a CUDA device), plus DLA where the builder has cores; never CPU."""
        if not self.is_available():
            return []
        return ["GPU", "DLA"] if dla_cores() > 0 else ["GPU"]

    def compile(self, onnx_path: Path, out_path: Path, **options) -> Path:
        """Build a tagged engine on this machine; options are trt_build.build_engine's."""
        from .trt_build import build_engine

        self.require()
        return build_engine(onnx_path, out_path, **options)

    def runner(self, model_path: Path, *, device: str = "GPU", threads: int | None = None, **options) -> Runner:
        """A runner for a `.engine` built on this machine; `device` and `threads` do not apply."""
        from .trt_runner import TensorRTRunner

        self.require()
        return TensorRTRunner(Path(model_path))
