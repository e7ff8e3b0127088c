"""GPU buffers for execute_async_v3 (torch and cuda-python paths); these need a CUDA device."""

from __future__ import annotations

import numpy as np
import pytest

from edgedistill.backends.trt_buffers import CudartBuffers, TorchBuffers, make_buffers
from edgedistill.backends.trt_env import cuda_device, load_cudart

pytestmark = pytest.mark.gpu
needs_cuda = pytest.mark.skipif(cuda_device() is None, reason="no CUDA device")


def roundtrip(buffers, cudart=None):
    """Upload, copy device-to-device into an 'output' (what an engine would write), download."""
    source = np.arange(2 * 3 * 4 * 5, dtype=np.float32).reshape(2, 3, 4, 5)
    src = buffers.upload(source)
    dst = buffers.empty(source.shape, source.dtype)
    nbytes = source.nbytes
    if cudart is None:
        import torch

        with torch.cuda.stream(buffers._stream):
            dst.copy_(src)
    else:
        cudart.cudaMemcpyAsync(buffers.ptr(dst), buffers.ptr(src), nbytes, cudart.cudaMemcpyKind.cudaMemcpyDeviceToDevice, buffers.stream)
    out = buffers.download(dst)
    buffers.release()
    np.testing.assert_array_equal(out, source)
    assert out.dtype == np.float32 and buffers.ptr(src) != 0 and buffers.stream != 0


@needs_cuda
def test_torch_buffers_roundtrip():
    buffers = TorchBuffers()
    roundtrip(buffers)
    half = buffers.empty((3,), np.float16)
    assert str(half.dtype) == "torch.float16"
    buffers.close()


@needs_cuda
def test_cudart_buffers_roundtrip():
    cudart = load_cudart()
    if cudart is None:
        pytest.skip("cuda-python is not installed")
    buffers = CudartBuffers()
    roundtrip(buffers, cudart)
    buffers.close()


@needs_cuda
def test_make_buffers_prefers_torch():
    assert isinstance(make_buffers(), TorchBuffers)


def test_cudart_buffers_reuse_blocks_across_calls(monkeypatch):
    """No cudaMalloc/cudaFree pair per inference: it would sit inside the timed call (fake cudart, no GPU needed)."""
    import types

    from edgedistill.backends import trt_buffers

    calls = {"malloc": 0, "free": 0}
    next_ptr = iter(range(0x1000, 0x100000, 0x100))

    def malloc(nbytes):
        calls["malloc"] += 1
        return 0, next(next_ptr)

    def free(ptr):
        calls["free"] += 1
        return (0,)

    rt = types.SimpleNamespace(cudaStreamCreate=lambda: (0, 7), cudaMalloc=malloc, cudaFree=free,
                               cudaMemcpyAsync=lambda *a: (0,), cudaStreamSynchronize=lambda s: (0,), cudaStreamDestroy=lambda s: (0,),
                               cudaMemcpyKind=types.SimpleNamespace(cudaMemcpyHostToDevice=1, cudaMemcpyDeviceToHost=2))
    monkeypatch.setattr(trt_buffers, "load_cudart", lambda: rt)
    buffers = CudartBuffers()
    for _ in range(3):  # three inferences of the same shapes
        buffers.upload(np.zeros((2, 3), np.float32))
        buffers.empty((2, 4), np.float32)
        buffers.release()
    assert calls == {"malloc": 2, "free": 0}
    buffers.close()
    assert calls["free"] == 2
