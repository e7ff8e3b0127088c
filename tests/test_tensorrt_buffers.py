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
