"""What this machine offers the TensorRT path: the `tensorrt` module and a CUDA device.

Everything is looked up lazily, so importing edgedistill never needs TensorRT or CUDA.
"""

from __future__ import annotations

import functools
import importlib
import platform
from dataclasses import dataclass

from ..errors import EdgedistillError, MissingBackendError

EXTRA_HINT = "pip install 'edgedistill[tensorrt]'"


@dataclass(frozen=True)
class CudaDevice:
    name: str
    compute_capability: str  # "8.7" for Orin, "9.0" for H100


def import_tensorrt(purpose: str = "the TensorRT backend"):
    """Return the `tensorrt` module or raise an error that names the pip extra."""
    try:
        return importlib.import_module("tensorrt")
    except ImportError as exc:
        missing = MissingBackendError("tensorrt", "tensorrt", purpose)
        if platform.machine().lower() in ("aarch64", "arm64"):  # a Jetson: JetPack's TensorRT, never the PyPI wheels
            missing.fix = ("use JetPack's TensorRT: sudo apt install python3-libnvinfer, and a venv made with "
                           "python3 -m venv --system-site-packages so it sees it (not the [tensorrt] extra)")
        raise missing from exc
    except Exception as exc:  # e.g. OSError when libnvinfer.so is missing or mismatched
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise EdgedistillError(
            f"TensorRT is installed but failed to load: {first}",
            f"reinstall it to match this CUDA driver ({EXTRA_HINT}), or on Jetson use the JetPack TensorRT",
        ) from exc


def tensorrt_version() -> str | None:
    """The installed TensorRT version, or None when it cannot be imported."""
    try:
        return str(import_tensorrt().__version__)
    except EdgedistillError:
        return None


@functools.lru_cache(maxsize=1)
def dla_cores() -> int:
    """DLA cores TensorRT's builder reports (2 on AGX Orin, 0 on a discrete GPU); asked once per
    process, since making a Builder initialises CUDA."""
    try:
        trt = import_tensorrt()
        return int(getattr(trt.Builder(trt.Logger(trt.Logger.WARNING)), "num_DLA_cores", 0))
    except Exception:  # no TensorRT, no device or a broken driver: no DLA to offer
        return 0


def cuda_device(index: int = 0) -> CudaDevice | None:
    """The CUDA device TensorRT will use, via torch or else cuda-python; None when there is none."""
    found = _device_from_torch(index)
    return found if found is not None else _device_from_cuda_python(index)


def _device_from_torch(index: int) -> CudaDevice | None:
    try:
        import torch
    except ImportError:
        return None
    try:
        if not torch.cuda.is_available() or torch.cuda.device_count() <= index:
            return None
        major, minor = torch.cuda.get_device_capability(index)
        return CudaDevice(torch.cuda.get_device_name(index), f"{major}.{minor}")
    except Exception:  # a CPU-only build or a broken driver both mean "no device here"
        return None


def _device_from_cuda_python(index: int) -> CudaDevice | None:
    cudart = load_cudart()
    if cudart is None:
        return None
    try:
        err, count = cudart.cudaGetDeviceCount()
        if int(err) != 0 or count <= index:
            return None
        err, props = cudart.cudaGetDeviceProperties(index)
        if int(err) != 0:
            return None
        name = props.name.decode(errors="replace") if isinstance(props.name, bytes) else str(props.name)
        return CudaDevice(name.rstrip("\x00"), f"{props.major}.{props.minor}")
    except Exception:
        return None


def load_cudart():
    """cuda-python's runtime module (new and old import paths), or None."""
    for name in ("cuda.bindings.runtime", "cuda.cudart"):
        try:
            return importlib.import_module(name)
        except Exception:
            continue
    return None
