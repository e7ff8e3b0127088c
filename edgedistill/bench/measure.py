"""One artifact on this host: fidelity, latency, throughput sweep, peak memory, probe accuracy -> a bench row."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import psutil

from ..artifacts import Artifact
from ..backends import get_backend
from ..device_names import device_family
from .affinity import pinned
from .fidelity import fidelity
from .latency import measure_latency
from .memory import PeakMemory
from .probe import probe_accuracy
from .throughput import batch_of, sweep


@dataclass
class Plan:
    """What to measure, resolved from the bench config and the target profile."""

    inputs: np.ndarray
    reference: dict
    teacher_logits: np.ndarray | None
    warmup: int
    iterations: int
    time_budget_s: float | None
    batch: int
    batch_sizes: list[int]
    threads: int | None
    cpus: set[int] = field(default_factory=set)
    labelled: tuple | None = None  # (inputs, labels) from bench.eval_dir
    task_labels: np.ndarray | None = None  # each labelled image's column in `logits`, when the classes are the student's
    zero_shot: object | None = None  # zero_shot.ZeroShot from bench.zero_shot_head
    knn_k: int = 5

    def timing(self) -> dict:
        return {"warmup": self.warmup, "iterations": self.iterations, "time_budget_s": self.time_budget_s, "cpus": self.cpus or None}


def model_file(artifact: Artifact, root: Path) -> Path:
    path = artifact.abspath(root)
    return path / "model.xml" if artifact.kind == "openvino-ir" else path


def size_on_disk_mb(path: Path) -> float:
    """The model's bytes on disk (an OpenVINO IR folder counts its .xml and .bin)."""
    files = [p for p in path.rglob("*") if p.is_file()] if path.is_dir() else [path]
    return round(sum(p.stat().st_size for p in files) / 1e6, 3)


def _listed(names: list[str], first: int = 6) -> str:
    return ", ".join(names[:first]) + (f" (+{len(names) - first} more)" if len(names) > first else "") or "none"


def quantization_note(artifact: Artifact) -> str:
    """Which layers the accuracy-aware fallback (or NNCF's accuracy control) kept in float, so the report shows
    the trade; and whether the fidelity shown was measured on images calibration saw."""
    notes = []
    if fallback := artifact.extra.get("fallback"):
        layers = artifact.extra.get("float_layers") or []
        budget = "within" if fallback.get("within_budget") else "NOT within"
        notes.append(f"{len(layers)} layer(s) kept in float ({_listed(layers)}); {budget} the fidelity budget on held-out views")
    nncf = artifact.extra.get("nncf") or {}
    if nncf.get("within_max_drop") is False:  # recorded with the drop since accuracy control reports it
        ops = nncf["float_ops"]
        notes.append(f"NNCF accuracy control: {nncf['metric']} drop {nncf['drop']:.4f} NOT within nncf_max_drop {nncf['max_drop']} "
                     f"on held-out views, {len(ops)} of {nncf['quantized_ops']} quantized op(s) reverted to float ({_listed(ops)})")
    if (artifact.extra.get("calibration") or {}).get("shares_evaluation_images"):
        notes.append("calibrated on images its fidelity views are cropped from (too few images to keep apart: "
                     "a larger quantize.calibration source gives an independent measure)")
    return "; ".join(notes)


def uses_a_gpu(backend: str, device: str) -> bool:
    """Whether a row's runtime may hold GPU memory: TensorRT, or a GPU, DLA or AUTO device (GPU.1, AUTO:GPU,CPU)."""
    return backend == "tensorrt" or device_family(device) in ("GPU", "DLA", "AUTO")


def effective_threads(backend: str, asked: int | None, settings: dict) -> int | None:
    """The threads of the runtime's CPU pool, where it is known: OpenVINO's count read back from the
    compiled model; for ONNX Runtime the count asked for, else its default, one per physical core (its
    cpuinfo count, which CPU affinity does not change; psutil counts the same cores). None where the runtime
    has no CPU pool or does not say (TensorRT; an OpenVINO plugin without INFERENCE_NUM_THREADS)."""
    if backend == "openvino":
        return settings.get("INFERENCE_NUM_THREADS")
    if backend == "onnxruntime":
        return asked or psutil.cpu_count(logical=False)
    return None


def measure(artifact: Artifact, workdir: Path, device: str, plan: Plan, timed: bool) -> dict:
    row = {"name": artifact.name, "path": artifact.path, "backend": artifact.backend, "precision": artifact.precision,
           "device": device, "size_mb": size_on_disk_mb(artifact.abspath(workdir)), "batch": plan.batch, "threads": plan.threads}
    if artifact.extra.get("fallback"):
        row["quantization"] = {"float_layers": artifact.extra.get("float_layers") or [], "within_budget": artifact.extra["fallback"].get("within_budget")}
    try:
        backend = get_backend(artifact.backend)
        backend.devices()  # imports the runtime before the memory window: its first import is not this model's memory
        with contextlib.ExitStack() as active:
            # pinned for the runner's whole life: OpenVINO's CPU plugin puts back the affinity it saw when it compiled
            active.enter_context(pinned(plan.cpus or None))
            runner = backend.runner(model_file(artifact, workdir), device=device, threads=plan.threads)
            # Peak memory: activation (weights, arenas, compilation) and one inference at the deployment batch,
            # before the fidelity chunks, the probe's sklearn import and the batch sweep can raise it
            with PeakMemory() as memory:
                active.enter_context(runner)
                runner.infer({"input": batch_of(plan.inputs, plan.batch)})
                if uses_a_gpu(artifact.backend, device):  # a CPU row would count other processes' GPU memory (device-delta)
                    memory.sample_gpu()
            outputs = runner.infer_all(plan.inputs)
            row["fidelity"] = fidelity(outputs, plan.reference, plan.teacher_logits)
            if plan.zero_shot is not None:  # the embedding's zero-shot class against the fp32 model's and the teacher's
                row["fidelity"].update(plan.zero_shot.agreement(outputs["embedding"]))
            if plan.labelled is not None:
                labelled = runner.infer_all(plan.labelled[0])
                row["fidelity"].update(probe_accuracy(labelled["embedding"], plan.labelled[1], k=plan.knn_k))
                if plan.task_labels is not None and "logits" in labelled:  # the deployed class output against the true labels
                    row["fidelity"]["task_top1"] = round(float((labelled["logits"].argmax(1) == plan.task_labels).mean()), 4)
                if plan.zero_shot is not None:  # the embedding's zero-shot class against the true labels
                    row["fidelity"]["zero_shot_top1"] = plan.zero_shot.top1(labelled["embedding"])
            row["runtime_settings"] = runner.runtime_settings()
            row["threads"] = effective_threads(artifact.backend, plan.threads, row["runtime_settings"])
            if timed:
                stats = measure_latency(runner, {"input": batch_of(plan.inputs, plan.batch)}, **plan.timing())
                row.update(status="measured", latency_ms=stats.as_dict(), notes=quantization_note(artifact))
                # the main batch's sync latency is reused by a sync sweep; an async one (OpenVINO) times it again
                row["throughput"] = sweep(runner, plan.inputs, sorted({plan.batch, *plan.batch_sizes}),
                                          measured={plan.batch: stats}, **plan.timing())
                row["throughput_ips"] = next(t for t in row["throughput"] if t["batch"] == plan.batch)["throughput_ips"]
        row["memory"] = {**memory.as_dict(), "batch": plan.batch}
        if plan.cpus:
            row["runtime_settings"]["pinned_cpus"] = sorted(plan.cpus)
    except Exception as exc:  # one broken artifact must not hide the others' results
        row.update(status="failed", latency_ms=None, throughput_ips=None, fidelity=row.get("fidelity"),
                   notes=f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}")
    return row
