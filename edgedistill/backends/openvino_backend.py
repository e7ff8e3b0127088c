"""OpenVINO backend: converts ONNX to IR (FP32/FP16) and runs IR on CPU, GPU, NPU or AUTO with
an explicit precision hint.

OpenVINO's CPU plugin silently runs bf16 on CPUs with AVX512-BF16/AMX (this host reports
INFERENCE_PRECISION_HINT=bfloat16 by default); we always set INFERENCE_PRECISION_HINT ourselves
and record what the compiled model reports.
"""

from __future__ import annotations

import functools
import importlib.util
import os
from pathlib import Path

import numpy as np

from ..artifacts import write_failure_errno
from ..device_names import device_family, devices_listed
from ..errors import EdgedistillError, MissingBackendError
from .base import Backend, Runner
from .signal_stack import kept_signal_stack

DEVICES = ("CPU", "GPU", "NPU", "AUTO")
# "auto": f32 where the device can compute it (fidelity first); the NPU computes f16 natively and
# takes no hint. "default" leaves the runtime's own choice (bf16 on such CPUs), for comparisons.
AUTO_HINTS = {"CPU": "f32", "GPU": "f32", "NPU": None, "AUTO": "f32"}


def _import_ov():
    try:
        import openvino
    except ImportError as exc:
        raise MissingBackendError("openvino", None, "the OpenVINO backend") from exc
    return openvino


@functools.lru_cache(maxsize=1)
def available_devices() -> tuple[str, ...]:
    """OpenVINO's device names here (CPU, GPU.0, NPU); asked once per process, Core() loads every plugin."""
    try:
        with kept_signal_stack():
            return tuple(_import_ov().Core().available_devices)
    except Exception:  # a broken install or plugin: report no device rather than fail the caller
        return ()


def device_kinds(names) -> list[str]:
    """Each device name plus its family, so GPU.0 also counts as GPU."""
    kinds: list[str] = []
    for name in names:
        for kind in (name.upper(), device_family(name)):
            if kind not in kinds:
                kinds.append(kind)
    return kinds


def ir_batch(device: str, batch_opt: int) -> int | None:
    """The batch an IR for `device` is fixed at, None to keep the ONNX model's dynamic batch: the NPU
    plugin compiles only static shapes ("only models with static shapes are supported on NPU")."""
    return int(batch_opt) if device_family(device) == "NPU" else None


def fix_batch(model, batch: int | None):
    """`model` with every input's dynamic batch dimension set to `batch` (None: unchanged)."""
    if batch is None:
        return model
    ov = _import_ov()
    shapes = {}
    for port in model.inputs:
        shape = port.get_partial_shape()
        if shape.rank.is_static and len(shape) and shape[0].is_dynamic:
            shapes[port.get_any_name()] = ov.PartialShape([batch, *list(shape)[1:]])
    if shapes:
        model.reshape(shapes)
    return model


def convert_to_ir(onnx_path: Path, xml_path: Path, fp16_weights: bool = False, batch: int | None = None) -> Path:
    """ONNX -> OpenVINO IR (.xml + .bin). FP16 compresses weights; compute precision is a runtime hint.
    `batch` fixes a dynamic batch (see ir_batch)."""
    return save_ir_weights(convert_onnx(onnx_path, batch), xml_path, fp16_weights)


def convert_onnx(onnx_path: Path, batch: int | None = None):
    """ONNX -> ov.Model, its batch fixed where `batch` says (ir_batch); one model serves every weight precision."""
    return fix_batch(_import_ov().convert_model(str(onnx_path)), batch)


def save_ir_weights(model, xml_path: Path, fp16_weights: bool) -> Path:
    """`model` saved as IR with fp32 or fp16-compressed weights; `model` is left as it was, to be saved at the other
    precision too (save_model compresses a copy)."""
    if fp16_weights:  # the ONNX file's metadata, carried over, says fp32: the IR must say what it holds
        model = model.clone()  # shares the weights' memory
        model.set_rt_info("fp16", ["framework", "edgedistill.precision"])
    return save_ir(model, xml_path, compress_to_fp16=fp16_weights)


def save_ir(model, xml_path: Path, compress_to_fp16: bool = False) -> Path:
    """ov.save_model, with its write failures told apart. It reports a full disk or a file-size limit
    only as `RuntimeError: basic_ios::clear: iostream error` (no errno, and it may delete what it wrote):
    here they become the OSError the CLI turns into its one-line disk error naming the file."""
    ov = _import_ov()
    xml_path = Path(xml_path)
    xml_path.parent.mkdir(parents=True, exist_ok=True)
    try:
        ov.save_model(model, str(xml_path), compress_to_fp16=compress_to_fp16)
    except RuntimeError as exc:
        code = _write_failure(model, xml_path, compress_to_fp16)
        if code is not None:
            raise OSError(code, os.strerror(code), str(xml_path)) from exc
        if "iostream error" not in str(exc):  # not a write failure: a crash keeps its traceback
            raise
        raise EdgedistillError(f"OpenVINO could not write '{xml_path}' ({str(exc).splitlines()[0]})",
                               "check that the folder is writable and its disk healthy, or choose another --out") from exc
    return xml_path


def _write_failure(model, xml_path: Path, compress_to_fp16: bool) -> int | None:
    """EFBIG when the IR's weights reach this process's file-size limit (ulimit -f), ENOSPC when they do
    not fit in the space left at `xml_path`; None when neither explains a failed save."""
    weights = 0  # about the .bin's size: the constants, f32 ones halved when compressed
    for op in model.get_ordered_ops():
        if op.get_type_name() == "Constant":
            halve = compress_to_fp16 and op.get_element_type().get_type_name() == "f32"
            weights += op.get_byte_size() // (2 if halve else 1)
    written = max((p.stat().st_size for p in (xml_path, xml_path.with_suffix(".bin")) if p.is_file()), default=0)
    return write_failure_errno(xml_path, max(weights + (1 << 20), written))  # + room for the .xml


def check_device(core, device: str) -> None:
    """Raise a clear error when `device` (CPU, GPU, GPU.1, NPU, AUTO, AUTO:GPU,CPU) is not here."""
    family = device_family(device)
    if family not in DEVICES:
        raise EdgedistillError(f"unknown OpenVINO device '{device}'", f"use one of: {', '.join(DEVICES)}")
    available = list(core.available_devices)
    wanted = devices_listed(device) if family == "AUTO" else [device]
    # GPU names every GPU.N; a single GPU is listed as GPU and answers to GPU.0 too, but GPU.1 is not it
    missing = [d for d in wanted if not any(a == d or a.startswith(d + ".") or d == a + ".0" for a in available)]
    if missing:
        raise EdgedistillError(
            f"OpenVINO device {', '.join(missing)} is not available on this host (found: {', '.join(available) or 'none'})",
            "install the device's driver (Intel GPU: intel-opencl-icd; NPU: intel-npu-driver), or pick another target / device=AUTO",
        )


def compile_config(device: str, precision_hint: str | None, threads: int | None) -> dict:
    family = device_family(device)
    hint = AUTO_HINTS.get(family) if precision_hint in (None, "auto") else (None if precision_hint == "default" else precision_hint)
    config: dict = {"PERFORMANCE_HINT": "LATENCY"}
    cpu = {}
    if hint is not None:
        cpu["INFERENCE_PRECISION_HINT"] = hint
    if threads:
        cpu["INFERENCE_NUM_THREADS"] = threads
    if family == "AUTO":
        # AUTO forwards per-device settings: threads only the CPU knows; the GPU would otherwise run f16, its default
        properties = {"CPU": cpu} if cpu else {}
        gpu_hint = AUTO_HINTS["GPU"] if precision_hint in (None, "auto") else hint
        if gpu_hint is not None:
            properties["GPU"] = {"INFERENCE_PRECISION_HINT": gpu_hint}
        if properties:
            config["DEVICE_PROPERTIES"] = properties
        # AUTO otherwise answers on the CPU while the GPU compiles, then switches: fidelity and the first
        # timed runs would mix two devices ("testing accuracy with the AUTO device is not recommended")
        config["ENABLE_STARTUP_FALLBACK"] = False
    elif family == "CPU":
        config.update(cpu)
    elif hint is not None:
        config["INFERENCE_PRECISION_HINT"] = hint
    return config


class OpenVinoRunner(Runner):
    def __init__(self, model_path: Path, device: str = "CPU", threads: int | None = None, precision_hint: str | None = "auto"):
        super().__init__(f"openvino:{Path(model_path).name}")
        self.model_path = Path(model_path)
        self.device = device
        self.threads = threads
        self.precision_hint = precision_hint
        self.config: dict = {}
        self.core = None
        self.compiled = None
        self.request = None

    def _activate_impl(self) -> None:
        ov = _import_ov()
        with kept_signal_stack():
            self.core = ov.Core()  # kept for throughput_queue: a second Core would start a second CPU plugin and thread pool
            check_device(self.core, self.device)
            self.config = compile_config(self.device, self.precision_hint, self.threads)
            self.compiled = self.core.compile_model(str(self.model_path), self.device, self.config)
            self.request = self.compiled.create_infer_request()

    def _deactivate_impl(self) -> None:
        with kept_signal_stack():
            self.request = None
            self.compiled = None
            self.core = None

    def throughput_queue(self) -> "ThroughputQueue":
        """The model compiled again for throughput (see ThroughputQueue); the runner must be active."""
        return ThroughputQueue(self.core, self.model_path, self.device, {**self.config, "PERFORMANCE_HINT": "THROUGHPUT"})

    def _infer_impl(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        results = self.request.infer(feeds)
        return {output.get_any_name(): np.asarray(value) for output, value in results.items()}

    def _input_names_impl(self) -> list[str]:
        return [i.get_any_name() for i in self.compiled.inputs]

    def batch_limits(self) -> tuple[int, int | None]:
        """An IR fixed at batch N (an NPU's, ir_batch) takes exactly N rows: infer_all feeds it N at a time."""
        shape = self.compiled.inputs[0].get_partial_shape()
        if shape.rank.is_static and len(shape) and shape[0].is_static:
            return shape[0].get_length(), shape[0].get_length()
        return 1, None

    def _property(self, name: str):
        try:
            return self.compiled.get_property(name)
        except Exception:  # AUTO and some plugins do not expose every property
            return None

    def runtime_settings(self) -> dict:
        if self.compiled is None:
            return {}
        precision = self._property("INFERENCE_PRECISION_HINT")
        threads = self._property("INFERENCE_NUM_THREADS")
        return {
            "device": self.device,
            "execution_devices": [str(d) for d in (self._property("EXECUTION_DEVICES") or [])],
            "precision_hint_requested": self.precision_hint or "auto",
            "INFERENCE_PRECISION_HINT": getattr(precision, "get_type_name", lambda: str(precision))() if precision is not None else None,
            "INFERENCE_NUM_THREADS": int(threads) if threads is not None else None,
            "PERFORMANCE_HINT": str(self._property("PERFORMANCE_HINT")).split(".")[-1],
            "config": {k: v for k, v in self.config.items()},  # what we asked for (AUTO reports no hint of its own)
        }


class ThroughputQueue:
    """A second compile of a runner's model at PERFORMANCE_HINT=THROUGHPUT (same device, precision hint and
    threads), run through an AsyncInferQueue of OPTIMAL_NUMBER_OF_INFER_REQUESTS requests: what
    benchmark_app -hint throughput measures. The runner's LATENCY compile with one synchronous request
    leaves the CPU's other streams idle, so batch x 1000 / its mean latency understates throughput."""

    def __init__(self, core, model_path: Path, device: str, config: dict):
        self.core, self.model_path, self.device, self.config = core, Path(model_path), device, config
        self.compiled = None
        self.queue = None
        self.nireq = 0

    def __enter__(self) -> "ThroughputQueue":
        with kept_signal_stack():
            self.compiled = self.core.compile_model(str(self.model_path), self.device, self.config)
            self.nireq = max(1, int(self.compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS")))
        self.renew()
        return self

    def renew(self) -> None:
        """A fresh set of requests: one whose start_async raised (a batch a static model rejects) stays busy
        for good, and the next start_async would wait for it forever."""
        with kept_signal_stack():
            self.queue = _import_ov().AsyncInferQueue(self.compiled, self.nireq)

    def __exit__(self, *exc) -> None:
        with kept_signal_stack():
            if self.queue is not None:
                self.queue.wait_all()
            self.queue = None
            self.compiled = None

    def fill(self, feeds: dict[str, np.ndarray]) -> None:
        """Give every request its own copy of `feeds`, once, as benchmark_app does: the timed loop then only
        starts requests. Passing the batch to each start_async would copy it in Python on every request, which
        at a few ms per request costs a tenth of the throughput or more."""
        ov = _import_ov()
        with kept_signal_stack():
            for request in self.queue:
                for name, array in feeds.items():
                    request.set_tensor(name, ov.Tensor(array))  # a copy of its own (shared_memory=False)

    def start(self) -> None:
        """Queue one inference on the filled inputs; blocks while every request is busy."""
        self.queue.start_async()

    def wait(self) -> None:
        self.queue.wait_all()

    def settings(self) -> dict:
        """What the throughput figure was measured with: hint, streams (None where the device does not say), requests."""
        try:
            streams = int(self.compiled.get_property("NUM_STREAMS"))
        except Exception:  # AUTO and some plugins do not expose NUM_STREAMS
            streams = None
        return {"mode": "async", "performance_hint": "THROUGHPUT", "streams": streams, "nireq": self.nireq}


class OpenVinoBackend(Backend):
    name = "openvino"

    def availability(self) -> tuple[bool, str]:
        if importlib.util.find_spec("openvino") is None:
            return False, "openvino is not installed (pip install openvino)"
        return True, ""

    def devices(self) -> list[str]:
        return device_kinds(available_devices()) if self.is_available() else []

    def save_ir(self, model, xml_path: Path, compress_to_fp16: bool = False) -> Path:
        """Write an ov.Model (NNCF's INT8 one too) as IR, a full disk reported as one (see save_ir)."""
        return save_ir(model, xml_path, compress_to_fp16)

    def runner(self, model_path: Path, *, device: str = "CPU", threads: int | None = None, precision_hint: str | None = "auto", **options) -> OpenVinoRunner:
        return OpenVinoRunner(model_path, device=device, threads=threads, precision_hint=precision_hint)
