"""Backend and Runner interfaces (the Polygraphy pattern: public methods check state, `_impl` does the work)."""

from __future__ import annotations

import abc
import time
from pathlib import Path

import numpy as np

from ..errors import EdgedistillError

DEFAULT_CHUNK = 16  # rows per infer_all call when the runner sets no lower limit


def pad_rows(chunk: np.ndarray, rows: int) -> np.ndarray:
    """`chunk` with its last row repeated up to `rows` rows (a fixed-batch engine takes no fewer)."""
    missing = rows - len(chunk)
    return np.concatenate([chunk, np.repeat(chunk[-1:], missing, axis=0)]) if missing > 0 else chunk


class Runner(abc.ABC):
    """Runs one compiled model. Use as a context manager; `infer` times each call."""

    def __init__(self, name: str):
        self.name = name
        self.is_active = False
        self._last_inference_time: float | None = None

    def __enter__(self) -> "Runner":
        self.activate()
        return self

    def __exit__(self, *exc) -> None:
        self.deactivate()

    def activate(self) -> None:
        if self.is_active:
            return
        self._activate_impl()
        self.is_active = True

    def deactivate(self) -> None:
        if not self.is_active:
            return
        self._deactivate_impl()
        self.is_active = False

    def infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if not self.is_active:
            raise RuntimeError(f"runner {self.name} must be activated before infer()")
        start = time.perf_counter()
        outputs = self._infer_impl(feeds)
        self._last_inference_time = time.perf_counter() - start
        return outputs

    def infer_all(self, inputs: np.ndarray, input_name: str = "input", batch: int = DEFAULT_CHUNK) -> dict[str, np.ndarray]:
        """Outputs for every row of `inputs`, inferred in chunks of at most `batch` rows (fewer when
        the runner takes fewer; a short last chunk is padded up to its smallest batch) and concatenated."""
        low, high = self.batch_limits()
        step = max(low, min(batch, high) if high else batch)
        parts: dict[str, list] = {}
        for start in range(0, len(inputs), step):
            chunk = inputs[start : start + step]
            for name, value in self.infer({input_name: pad_rows(chunk, low)}).items():
                parts.setdefault(name, []).append(value[: len(chunk)])
        return {name: np.concatenate(values) for name, values in parts.items()}

    def batch_limits(self) -> tuple[int, int | None]:
        """(smallest, largest) batch one `infer` call accepts; None: no upper limit. Engines with an
        optimisation profile (TensorRT) answer from it, so infer_all never feeds a batch they reject."""
        return 1, None

    def last_inference_time(self) -> float | None:
        """Seconds taken by the last `infer` call (host wall clock, includes copies)."""
        return self._last_inference_time

    @property
    def input_names(self) -> list[str]:
        return self._input_names_impl()

    def runtime_settings(self) -> dict:
        """Settings the runtime applied (threads, precision hints), recorded in the report."""
        return {}

    @abc.abstractmethod
    def _activate_impl(self) -> None: ...

    def _deactivate_impl(self) -> None:
        return None

    @abc.abstractmethod
    def _infer_impl(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]: ...

    @abc.abstractmethod
    def _input_names_impl(self) -> list[str]: ...


class Backend(abc.ABC):
    """A runtime that can compile an ONNX model for a device and run the result."""

    name: str = ""

    @abc.abstractmethod
    def availability(self) -> tuple[bool, str]:
        """(True, '') when usable here, else (False, reason with the fix)."""

    def devices(self) -> list[str]:
        """Device kinds this runtime can use on this host (CPU, GPU, NPU, DLA); runtimes that drive
        accelerators override this with what they actually find."""
        return ["CPU"] if self.is_available() else []

    def is_available(self) -> bool:
        return self.availability()[0]

    def require(self) -> None:
        ok, reason = self.availability()
        if not ok:
            raise EdgedistillError(f"backend '{self.name}' is unavailable: {reason}")

    @abc.abstractmethod
    def runner(self, model_path: Path, *, device: str = "CPU", threads: int | None = None, **options) -> Runner: ...
