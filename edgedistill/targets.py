"""Target device profiles: flat YAML files in targets/, or a user's file given by path."""

from __future__ import annotations

import platform
from dataclasses import dataclass, field
from pathlib import Path

from .config import from_dict, read_yaml_mapping
from .errors import EdgedistillError
from .profiles import bundled_dir, bundled_names


@dataclass(frozen=True)
class TargetProfile:
    name: str
    description: str = ""
    arch: str = "x86_64"  # CPU architecture of the device (x86_64 | aarch64)
    backends: tuple = ("onnxruntime", "openvino")  # in order of preference
    precisions: tuple = ("fp32", "int8")
    device: str = "CPU"  # CPU | GPU | NPU | AUTO | DLA
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
    # Toolchain the device ships (e.g. a JetPack's TensorRT), checked before building there.
    tensorrt_version: str | None = None
    jetpack: str | None = None
    # Published peak figures for estimates on hardware that is not here.
    peak_tflops_fp32: float | None = None
    peak_tflops_fp16: float | None = None
    peak_tops_int8: float | None = None
    bandwidth_gbs: float | None = None
    notes: str = ""
    source: str = field(default="", compare=False)  # the file it came from

    def runs_on_this_host(self) -> tuple[bool, str]:
        """Whether the target's own backends can run here (so its latency is measured, not estimated)."""
        from .backends import get_backend

        host_arch = platform.machine().lower().replace("amd64", "x86_64").replace("arm64", "aarch64")
        if host_arch != self.arch:
            return False, f"target is {self.arch}, this host is {host_arch}"
        for name in self.backends:
            backend = get_backend(name)
            ok, reason = backend.availability()
            if not ok:
                return False, f"{name}: {reason}"
            wanted = self.device.upper()
            if wanted != "AUTO" and wanted not in backend.devices():
                return False, f"{name} sees no {self.device} device here (it has: {', '.join(backend.devices()) or 'none'})"
        return True, ""


def load_target(name_or_path: str) -> TargetProfile:
    """Load a bundled target by name or a user profile by file path."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.is_file():
            raise EdgedistillError(f"target file '{path}' does not exist", "pass a bundled target name (edgedistill targets) or an existing YAML file")
    else:
        path = bundled_dir("targets") / f"{name_or_path}.yaml"
        if not path.is_file():
            known = ", ".join(bundled_names("targets"))
            raise EdgedistillError(f"unknown target '{name_or_path}'", f"choose one of: {known}, or pass a profile file path")
    data = read_yaml_mapping(path, "target file", "see targets/x86-cpu.yaml for the fields")
    data.setdefault("name", path.stem)
    profile = from_dict(TargetProfile, data, where=f"target {path.stem}")
    return TargetProfile(**{**profile.__dict__, "source": str(path)})


def list_targets() -> list[TargetProfile]:
    return [load_target(name) for name in bundled_names("targets")]
