"""Run a serialized TensorRT engine: check its tag, deserialize, infer with execute_async_v3."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import EdgedistillError
from .base import Runner
from .trt_buffers import make_buffers
from .trt_env import import_tensorrt
from .trt_tag import REBUILD_FIX, check_engine_tag, current_tag, read_engine_tag


class TensorRTRunner(Runner):
    """One engine on the first CUDA device. Inputs are numpy arrays; so are the outputs."""

    def __init__(self, engine_path: Path, name: str | None = None):
        super().__init__(name or f"tensorrt:{Path(engine_path).name}")
        self.engine_path = Path(engine_path)
        self._trt = self._runtime = self._engine = self._context = self._buffers = None
        self._inputs: list[str] = []
        self._outputs: list[str] = []
        self._dtypes: dict[str, np.dtype] = {}
        self._record: dict = {}
        self._limits: tuple[int, int | None] = (1, None)

    def _activate_impl(self) -> None:
        trt = import_tensorrt("running a TensorRT engine")
        # The tag check comes first: deserializing an engine from another TensorRT or GPU fails
        # with an opaque error (or worse), the tag says exactly what to do.
        check_engine_tag(self.engine_path, current_tag())
        self._record = read_engine_tag(self.engine_path)
        self._runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        dla_core = self._record.get("build", {}).get("dla_core")
        if dla_core is not None:
            # The core is a runtime setting, not part of the engine: without it a DLA engine runs on core 0
            # (or fails where that core is taken), whichever core the target named.
            available = int(getattr(self._runtime, "num_DLA_cores", 0))
            if not 0 <= int(dla_core) < available:
                raise EdgedistillError(f"engine '{self.engine_path.name}' was built for DLA core {dla_core}, this device has {available} DLA core(s)",
                                       "run it on the Jetson it was built for, or rebuild with a dla_core this device has (or none)")
            self._runtime.DLA_core = int(dla_core)
        engine = self._runtime.deserialize_cuda_engine(self.engine_path.read_bytes())
        if engine is None:
            raise EdgedistillError(f"TensorRT could not deserialize '{self.engine_path.name}'", REBUILD_FIX)
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        self._inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self._outputs = [n for n in names if n not in self._inputs]
        self._dtypes = {n: np.dtype(trt.nptype(engine.get_tensor_dtype(n))) for n in names}
        self._engine, self._trt = engine, trt
        self._limits = engine_batch_limits(engine, self._inputs)
        self._context = engine.create_execution_context()
        self._buffers = make_buffers()

    def _deactivate_impl(self) -> None:
        if self._buffers is not None:
            self._buffers.close()
        # Release in dependency order: the context uses the engine, the engine the runtime.
        self._buffers = self._context = self._engine = self._runtime = None

    def _infer_impl(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        missing = [n for n in self._inputs if n not in feeds]
        if missing:
            raise EdgedistillError(f"no feed for engine input(s) {', '.join(missing)}", f"feed {', '.join(self._inputs)}")
        ctx, buffers = self._context, self._buffers
        try:
            for name in self._inputs:
                array = np.ascontiguousarray(feeds[name], dtype=self._dtypes[name])
                if not ctx.set_input_shape(name, tuple(array.shape)):
                    raise EdgedistillError(
                        f"input '{name}' of shape {tuple(array.shape)} is outside the engine's profile {self._profile(name)}",
                        "feed a batch within the target's batch_min..batch_max, or rebuild for the batch you need",
                    )
                ctx.set_tensor_address(name, buffers.ptr(buffers.upload(array)))
            outputs = {}
            for name in self._outputs:
                outputs[name] = buffers.empty(tuple(ctx.get_tensor_shape(name)), self._dtypes[name])
                ctx.set_tensor_address(name, buffers.ptr(outputs[name]))
            if not ctx.execute_async_v3(buffers.stream):
                raise RuntimeError(f"TensorRT failed to run '{self.engine_path.name}'")
            return {name: buffers.download(handle) for name, handle in outputs.items()}
        finally:
            buffers.release()

    def _input_names_impl(self) -> list[str]:
        return list(self._inputs)

    def batch_limits(self) -> tuple[int, int | None]:
        return self._limits

    def _profile(self, name: str) -> str:
        try:
            low, _, high = self._engine.get_tensor_profile_shape(name, 0)
            return f"{tuple(low)}..{tuple(high)}"
        except Exception:
            return "(static)"

    def runtime_settings(self) -> dict:
        build = self._record.get("build", {})
        tag = self._record.get("tag", {})
        return {
            "tensorrt": tag.get("tensorrt"),
            "device": tag.get("device"),
            "precision": build.get("precision"),
            "dla_core": build.get("dla_core"),
            "fp32_layers": build.get("fp32_layers"),
        }


def engine_batch_limits(engine, inputs: list[str]) -> tuple[int, int | None]:
    """(smallest, largest) batch every input accepts: a fixed leading dim, else profile 0's range
    (the one the execution context uses)."""
    low, high = 1, None
    for name in inputs:
        shape = tuple(engine.get_tensor_shape(name))
        if not shape:  # a scalar input has no batch axis
            continue
        if shape[0] >= 0:
            first, last = shape[0], shape[0]
        else:
            mins, _, maxs = engine.get_tensor_profile_shape(name, 0)
            first, last = mins[0], maxs[0]
        low, high = max(low, int(first)), (int(last) if high is None else min(high, int(last)))
    return low, high
