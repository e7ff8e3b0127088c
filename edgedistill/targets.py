"""Target device profiles: flat YAML files in targets/, or a user's file given by path."""

from __future__ import annotations

import hashlib
import math
import platform
import re
from dataclasses import dataclass, field, fields
from pathlib import Path

from .config import from_dict
from .device_names import device_family, devices_listed
from .yaml_files import read_yaml_mapping
from .errors import EdgedistillError, input_path
from .profiles import bundled_dir, bundled_names


@dataclass(frozen=True)
class TargetProfile:
    name: str
    description: str = ""
    arch: str = "x86_64"  # CPU architecture of the device (x86_64 | aarch64); a profile file must name it (load_target)
    backends: tuple = ("onnxruntime", "openvino")  # in order of preference
    precisions: tuple = ("fp32", "int8")
    device: str = "CPU"  # CPU | GPU[.N] | NPU | AUTO[:list] | DLA; a profile file must name it (load_target)
    dla_core: int | None = None
    batch_min: int = 1
    batch_opt: int = 1
    batch_max: int = 8
    workspace_mb: int = 1024
    opset: int = 17
    calibration: str = "bundled-photos"
    bench_warmup: int = 10
    bench_iterations: int = 100
    bench_threads: int | None = None
    # Fidelity budget: the selected artifact must keep these against the fp32 student.
    min_cosine: float = 0.98
    min_top1_agreement: float = 0.99
    # Selection: measured p50s within this share of the fastest (0.05 = 5%) are tied, since
    # run-to-run latency noise is that large; the tie goes to the smaller file (docs/report-schema.md).
    selection_tolerance: float = 0.05
    # Toolchain the device ships (e.g. a JetPack's TensorRT), checked before building there.
    tensorrt_version: str | None = None
    jetpack: str | None = None
    # Published peak figures for estimates on hardware that is not here.
    peak_tflops_fp32: float | None = None
    peak_tflops_fp16: float | None = None
    peak_tops_int8: float | None = None
    bandwidth_gbs: float | None = None
    notes: str = ""  # free text kept with the profile (and its copy in a build folder); nothing reads it
    # The file it came from: not part of equality nor of the repr that stage keys hash, so a build
    # folder copied to a device and back (whose profile then loads from its target.yaml) is unchanged.
    source: str = field(default="", compare=False, repr=False)
    # Named by its path (--target my.yaml), not by a bundled name: kept in the build folder even when the
    # path is inside the targets/ folder of a checkout installed in editable mode
    given_as_file: bool = field(default=False, compare=False, repr=False)

    def __post_init__(self):
        if isinstance(self.device, str):  # OpenVINO's names are capitals; `gpu` (fine for TensorRT) means GPU
            object.__setattr__(self, "device", self.device.upper())
        tol = self.selection_tolerance
        if isinstance(tol, bool) or not isinstance(tol, (int, float)) or not math.isfinite(tol) or not 0 <= tol < 1:
            raise EdgedistillError(f"target {self.name}: selection_tolerance is {tol!r}, which is out of range",
                                   "set it to a share in [0, 1), e.g. 0.05 to count p50s within 5% of the fastest as tied")
        # A typo here used to pass (device: CPUU built everything and selected nothing, with exit 0) or
        # to fail only after distillation (backends: [openvno]): refused when the profile loads.
        problem = _profile_problem(self)
        if problem:
            raise EdgedistillError(f"target {self.name}: {problem[0]}", problem[1])

    def runs_on_this_host(self) -> tuple[bool, str]:
        """Whether the target's own backends can run here (so its latency is measured, not estimated)."""
        why = self._wrong_arch() or next((w for w in map(self.why_backend_cannot_run_here, self.backends) if w), "")
        return not why, why

    def why_backend_cannot_run_here(self, name: str) -> str:
        """Why backend `name` cannot run this target's models here ("" when it can): each pending row
        gives its own backend's cause, not that of the first backend that failed."""
        from .backends import get_backend

        wrong_arch = self._wrong_arch()
        if wrong_arch:
            return wrong_arch
        backend = get_backend(name)
        ok, reason = backend.availability()
        if not ok:
            return f"{name}: {reason}"
        devices = backend.devices()
        # by family, as OpenVINO reads them: GPU.1 is a GPU; AUTO:GPU,CPU needs one of those listed
        family, listed = device_family(self.device), devices_listed(self.device)
        wanted = [device_family(d) for d in listed] if family == "AUTO" and listed else [family]
        if wanted != ["AUTO"] and not any(d in devices for d in wanted):
            return f"{name} sees no {self.device} device here (it has: {', '.join(devices) or 'none'})"
        return ""

    def _wrong_arch(self) -> str:
        host_arch = platform.machine().lower().replace("amd64", "x86_64").replace("arm64", "aarch64")
        return f"target is {self.arch}, this host is {host_arch}" if host_arch != self.arch else ""

    def content_hash(self) -> str:
        """A short hash of the profile's settings, the config hash of what compile makes from it; by its
        repr, which leaves out `source`, so a profile reloaded from a copied build folder hashes the same."""
        return hashlib.sha256(repr(self).encode()).hexdigest()[:16]


ARCHES = ("x86_64", "aarch64")
DEVICES = ("CPU", "GPU", "NPU", "AUTO", "DLA")
PRECISIONS = ("fp32", "fp16", "int8")
# One device as OpenVINO names it (capitals; an index only on a GPU: CPU.0 and NPU.0 are refused), also each entry of AUTO:...
_ONE_DEVICE = re.compile(r"CPU|NPU|GPU(\.\d+)?")
# The device families each backend runs a target's models on (bench times every listed backend on the target's device):
# TensorRT builds for an NVIDIA GPU or its DLA only; DLA and NPU are TensorRT's and OpenVINO's alone.
# AUTO is OpenVINO's: ONNX Runtime would run it on the CPU under that label.
BACKEND_DEVICES = {"tensorrt": ("GPU", "DLA"), "openvino": ("CPU", "GPU", "NPU", "AUTO"), "onnxruntime": ("CPU", "GPU")}
PEAKS = ("peak_tflops_fp32", "peak_tflops_fp16", "peak_tops_int8", "bandwidth_gbs")
# What a profile file must say itself: defaulted, a Raspberry Pi profile was timed on this x86 host as the Pi, and an
# NPU profile without `device` ran on the CPU.
REQUIRED_IN_FILE = {"arch": f"the device's CPU architecture, one of: {', '.join(ARCHES)}",
                    "device": "where its runtimes run: CPU, GPU (or GPU.1), NPU, AUTO (or AUTO:GPU,CPU) or DLA"}


def _device_problem(device: str, backends: tuple) -> tuple[str, str] | None:
    """(cause, fix) for a device string OpenVINO would reject, or one the target's backends cannot run on."""
    family = device_family(device)
    if family not in DEVICES or any(c.isspace() for c in device):  # OpenVINO finds no device in 'AUTO: CPU'
        return f"device is {device!r}", f"use one of: {', '.join(DEVICES)} (GPU.N, AUTO:GPU,CPU), with no spaces"
    listed = devices_listed(device)
    well_formed = (device in ("AUTO", "DLA") or _ONE_DEVICE.fullmatch(device)
                   or (device.startswith("AUTO:") and listed and all(_ONE_DEVICE.fullmatch(d) for d in listed)))
    if not well_formed:
        return (f"device is {device!r}, which is no device name OpenVINO accepts",
                "write CPU, NPU, GPU or GPU.N (N: the GPU's index), AUTO or AUTO:<a list of those> such as AUTO:GPU,CPU, or DLA, in capitals")
    unfit = [b for b in backends if family not in BACKEND_DEVICES.get(b, DEVICES)]
    if unfit:
        return (f"backend {unfit[0]} cannot run on device {device}",
                f"{unfit[0]} runs on: {', '.join(BACKEND_DEVICES[unfit[0]])}; change the device or drop {unfit[0]} from backends")
    return None


def _peak_problem(t: TargetProfile) -> tuple[str, str] | None:
    """A zero or negative figure gave negative latencies, a 0 bandwidth no memory time at all (estimates many times too
    fast) and a 0 int8 peak the fp16 one: a figure is above 0, or null for unknown."""
    for name in PEAKS:
        value = getattr(t, name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0):
            return (f"{name} is {value!r}",
                    "set it to the data sheet's dense figure (above 0), or null where it is unknown (rows that need it stay pending)")
    return None


def _profile_problem(t: TargetProfile) -> tuple[str, str] | None:
    """(cause, fix) for the first setting a profile cannot mean, None when all are sound."""
    from .backends.registry import backend_names

    def listed(field: str, values: tuple, known: tuple) -> tuple[str, str] | None:
        if not values:
            return f"{field} is empty", f"list one or more of: {', '.join(known)}"
        unknown = [v for v in values if v not in known]
        return (f"{field} has {unknown[0]!r}, which is not one of them", f"use: {', '.join(known)}") if unknown else None

    checks = [
        (t.arch not in ARCHES, (f"arch is {t.arch!r}", f"use one of: {', '.join(ARCHES)}")),
        # by family: OpenVINO takes GPU.1 and AUTO:GPU,CPU too
        (True, listed("backends", tuple(t.backends), backend_names())),
        (True, _device_problem(t.device, tuple(t.backends))),  # after backends, so it names a known backend
        (True, _peak_problem(t)),
        (True, listed("precisions", tuple(t.precisions), PRECISIONS)),
        (not 1 <= t.batch_min <= t.batch_opt <= t.batch_max, (f"batch sizes min {t.batch_min}, opt {t.batch_opt}, max {t.batch_max} are not 1 <= min <= opt <= max",
                                                              "set batch_min, batch_opt and batch_max in that order, from 1")),
        (t.bench_iterations < 1 or t.bench_warmup < 0, (f"bench_iterations {t.bench_iterations} / bench_warmup {t.bench_warmup} cannot time anything",
                                                       "set bench_iterations to 1 or more and bench_warmup to 0 or more")),
        (t.bench_threads is not None and t.bench_threads < 1, (f"bench_threads is {t.bench_threads}", "set it to 1 or more, or leave it out for the runtime's default")),
        (t.dla_core is not None and t.dla_core < 0, (f"dla_core is {t.dla_core}", "set the DLA core's index (0 or 1 on AGX Orin), or null for none")),
        (t.workspace_mb < 1 or not 7 <= t.opset <= 30, (f"workspace_mb {t.workspace_mb} / opset {t.opset} is out of range",
                                                        "set workspace_mb to 1 or more and opset to what the device's toolchain parses (e.g. 17)")),
        # empty, it calibrated on whatever the current folder held
        (not str(t.calibration).strip(), ("calibration is empty", "name a calibration recipe (e.g. bundled-photos), a recipe .yaml file, "
                                                                  "an image folder, a .txt list or .tar shards, or leave it out for bundled-photos")),
        (not (0 <= t.min_cosine <= 1 and 0 <= t.min_top1_agreement <= 1), (f"min_cosine {t.min_cosine} / min_top1_agreement {t.min_top1_agreement} "
                                                                          "is outside [0, 1]", "set both to shares, e.g. 0.98 and 0.99")),
    ]
    return next((problem for failed, problem in checks if failed and problem), None)


def load_target(name_or_path: str) -> TargetProfile:
    """Load a bundled target by name or a user profile by file path."""
    path = Path(name_or_path).expanduser()  # a quoted '~/x.yaml', or one from a config file, no shell expanded
    with input_path("--target", name_or_path):
        is_file, is_dir = path.is_file(), path.is_dir()
    # a bundled name beats a folder of that name here: `--out x86-cpu` is a usual build folder name
    by_path = path.suffix in (".yaml", ".yml") or is_file or (is_dir and name_or_path not in bundled_names("targets"))
    if by_path:
        if is_dir:
            raise EdgedistillError(f"target '{path}' is a folder, not a profile file", "pass a bundled target name (edgedistill targets) or a YAML profile file")
        if not is_file:
            raise EdgedistillError(f"target file '{path}' does not exist", "pass a bundled target name (edgedistill targets) or an existing YAML file")
    else:
        path = bundled_dir("targets") / f"{name_or_path}.yaml"
        if not path.is_file():
            known = ", ".join(bundled_names("targets"))
            raise EdgedistillError(f"unknown target '{name_or_path}'", f"choose one of: {known}, or pass a profile file path")
    data = read_yaml_mapping(path, "target file", "see targets/x86-cpu.yaml for the fields")
    data.setdefault("name", path.stem)
    # the bundled profiles set both; a user's must not inherit this host's defaults (a misspelt key is named first, by from_dict)
    if by_path and set(data) <= {f.name for f in fields(TargetProfile)}:
        for key, meaning in REQUIRED_IN_FILE.items():
            if data.get(key) is None:
                raise EdgedistillError(f"target file '{path}' does not name its {key}", f"add `{key}:` with {meaning}")
    try:
        profile = from_dict(TargetProfile, data, where=f"target {path.stem}")
    except EdgedistillError as exc:  # which file: a build folder's copy is 'target.yaml' whatever the profile's name
        if not by_path:
            raise
        raise EdgedistillError(f"target file '{path}': {exc.cause}", exc.fix) from exc
    return TargetProfile(**{**profile.__dict__, "source": str(path), "given_as_file": by_path})


def list_targets() -> list[TargetProfile]:
    return [load_target(name) for name in bundled_names("targets")]
