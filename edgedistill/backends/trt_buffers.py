"""GPU buffers and a CUDA stream for TensorRT's execute_async_v3, via torch or cuda-python.

torch (a core dependency) is used when it sees a CUDA device; a CPU-only torch on a device
falls back to cuda-python from the `tensorrt` extra. Both give the same small interface: upload
a numpy array, allocate an output, hand TensorRT raw pointers and a stream, download results.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import EdgedistillError
from .trt_env import load_cudart


class TorchBuffers:
    """Tensors from torch's caching allocator, all work ordered on one private stream."""

    def __init__(self, device_index: int = 0):
        import torch

        self._torch = torch
        self._device = torch.device("cuda", device_index)
        self._stream = torch.cuda.Stream(device=self._device)
        self._live: list = []

    @property
    def stream(self) -> int:
        return int(self._stream.cuda_stream)

    def upload(self, array: np.ndarray):
        with self._torch.cuda.stream(self._stream):
            tensor = self._torch.from_numpy(np.ascontiguousarray(array)).to(self._device)
        self._live.append(tensor)
        return tensor

    def empty(self, shape: tuple, dtype: np.dtype):
        torch_dtype = self._torch.from_numpy(np.empty(0, dtype=dtype)).dtype
        with self._torch.cuda.stream(self._stream):
            tensor = self._torch.empty(tuple(shape), dtype=torch_dtype, device=self._device)
        self._live.append(tensor)
        return tensor

    @staticmethod
    def ptr(handle) -> int:
        return int(handle.data_ptr())

    def download(self, handle) -> np.ndarray:
        with self._torch.cuda.stream(self._stream):
            return handle.cpu().numpy()  # .cpu() waits for the stream's earlier work

    def synchronize(self) -> None:
        self._stream.synchronize()

    def release(self) -> None:
        self._live.clear()

    def close(self) -> None:
        self.synchronize()
        self.release()


@dataclass
class _DeviceArray:
    ptr: int
    shape: tuple
    dtype: np.dtype


class CudartBuffers:
    """Raw cudaMalloc buffers and a cudaStream from cuda-python."""

    def __init__(self):
        self._rt = load_cudart()
        if self._rt is None:
            raise EdgedistillError("neither a CUDA-enabled torch nor cuda-python is installed", "pip install 'edgedistill[tensorrt]'")
        self._stream = self._call(self._rt.cudaStreamCreate())
        self._allocs: list[tuple[int, int]] = []  # (pointer, bytes) handed out since the last release
        # Released blocks by size, reused as torch's caching allocator does: a cudaMalloc/cudaFree
        # pair per inference would land inside the timed call and slow this path against torch's
        self._pool: dict[int, list[int]] = {}
        self._staged: list[np.ndarray] = []  # host arrays kept alive until their async copy ran

    def _call(self, result):
        err, *rest = result if isinstance(result, tuple) else (result,)
        if int(err) != 0:
            raise RuntimeError(f"CUDA call failed: {err}")
        return rest[0] if len(rest) == 1 else rest

    @property
    def stream(self) -> int:
        return int(self._stream)

    def _malloc(self, nbytes: int) -> int:
        nbytes = max(int(nbytes), 1)
        free = self._pool.get(nbytes)
        ptr = free.pop() if free else int(self._call(self._rt.cudaMalloc(nbytes)))
        self._allocs.append((ptr, nbytes))
        return ptr

    def upload(self, array: np.ndarray) -> _DeviceArray:
        array = np.ascontiguousarray(array)
        handle = _DeviceArray(self._malloc(array.nbytes), array.shape, array.dtype)
        kind = self._rt.cudaMemcpyKind.cudaMemcpyHostToDevice
        self._call(self._rt.cudaMemcpyAsync(handle.ptr, array.ctypes.data, array.nbytes, kind, self._stream))
        self._staged.append(array)
        return handle

    def empty(self, shape: tuple, dtype: np.dtype) -> _DeviceArray:
        dtype = np.dtype(dtype)
        nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        return _DeviceArray(self._malloc(nbytes), tuple(shape), dtype)

    @staticmethod
    def ptr(handle: _DeviceArray) -> int:
        return handle.ptr

    def download(self, handle: _DeviceArray) -> np.ndarray:
        host = np.empty(handle.shape, dtype=handle.dtype)
        kind = self._rt.cudaMemcpyKind.cudaMemcpyDeviceToHost
        self._call(self._rt.cudaMemcpyAsync(host.ctypes.data, handle.ptr, host.nbytes, kind, self._stream))
        self.synchronize()
        return host

    def synchronize(self) -> None:
        self._call(self._rt.cudaStreamSynchronize(self._stream))

    def release(self) -> None:
        """The call's buffers go back to the pool (the next call of the same shapes reuses them)."""
        self.synchronize()
        for ptr, nbytes in self._allocs:
            self._pool.setdefault(nbytes, []).append(ptr)
        self._allocs.clear()
        self._staged.clear()

    def close(self) -> None:
        self.release()
        for ptrs in self._pool.values():
            for ptr in ptrs:
                self._call(self._rt.cudaFree(ptr))
        self._pool.clear()
        self._call(self._rt.cudaStreamDestroy(self._stream))


def make_buffers(device_index: int = 0):
    """TorchBuffers when torch sees CUDA, else CudartBuffers."""
    try:
        import torch

        if torch.cuda.is_available():
            return TorchBuffers(device_index)
    except ImportError:
        pass
    return CudartBuffers()
