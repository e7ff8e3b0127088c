"""Rows for artifacts the target device runs but this host cannot: pending until estimated or measured there.

Names match the rows the device's own bench will write, so an imported measurement replaces them.
Fidelity is copied from the host run of the same graph where there is one.
"""

from __future__ import annotations

from ..artifacts import Artifact
from ..targets import TargetProfile


def _pending(name: str, path: str, backend: str, precision: str, device: str, size_mb, fidelity, notes: str, batch: int) -> dict:
    return {"name": name, "path": path, "backend": backend, "precision": precision, "device": device, "status": "pending",
            "size_mb": size_mb, "batch": batch, "threads": None, "latency_ms": None, "throughput_ips": None,
            "fidelity": fidelity, "notes": notes}


def engine_batches(target: TargetProfile) -> tuple[int, int]:
    """The batch sizes the target's TensorRT engines take: batch_min..batch_max, or batch_opt alone on a
    DLA core, which has no dynamic shapes (backends/trt_build.py builds the profiles the same way)."""
    if target.dla_core is not None:
        return target.batch_opt, target.batch_opt
    return target.batch_min, target.batch_max


def batch_outside_engine(backend: str, batch: int, target: TargetProfile) -> str:
    """Why the device cannot run this row at `batch` (its engine rejects that shape), or '' when it can."""
    low, high = engine_batches(target)
    if backend != "tensorrt" or low <= batch <= high:
        return ""
    return (f"not estimated: bench.batch {batch} is outside the batch range {low}..{high} {target.name}'s TensorRT engines "
            f"are built for, so the device cannot run it (fix: set bench.batch within {low}..{high})")


def device_rows(artifacts: dict[str, Artifact], host_rows: list[dict], target: TargetProfile, why_not: str, batch: int) -> list[dict]:
    """`batch` is bench.batch: the device's own bench runs at it, so its estimate must too. Each row's note
    gives its own backend's cause (on nvidia-gpu, ONNX Runtime's rows wait for a GPU, not for TensorRT);
    `why_not`, the target's, where that backend would run here."""
    causes = {name: target.why_backend_cannot_run_here(name) or why_not for name in target.backends}
    by_name = {r["name"]: r for r in host_rows}
    by_precision = {r["precision"]: r for r in host_rows if r.get("fidelity")}
    rows = []
    bundle = artifacts.get("tensorrt-bundle") if "tensorrt" in target.backends else None
    for precision in (bundle.extra.get("precisions", []) if bundle else []):
        host = by_precision.get(precision) if precision == "int8" else None
        note = f"build on the device ({causes['tensorrt']})"
        if host:
            note += "; int8 fidelity measured on this host with ONNX Runtime on the same QDQ graph"
        if outside := batch_outside_engine("tensorrt", batch, target):
            note += f"; {outside}"
        rows.append(_pending(f"tensorrt-{precision}", bundle.path, "tensorrt", precision, target.device,
                             None, host.get("fidelity") if host else None, note, batch))
    for artifact in artifacts.values():
        if artifact.kind not in ("onnx", "openvino-ir") or artifact.backend not in target.backends:
            continue
        host = by_name.get(artifact.name)
        note = f"run on the device ({causes[artifact.backend]})" + ("; fidelity measured on this host with the same model" if host and host.get("fidelity") else "")
        rows.append(_pending(artifact.name, artifact.path, artifact.backend, artifact.precision, target.device,
                             host["size_mb"] if host else round(artifact.size / 1e6, 3), host.get("fidelity") if host else None, note, batch))
    return rows
