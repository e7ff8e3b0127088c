"""Stage `bench`: time every artifact that runs here and measure its fidelity -> bench/bench.json.

Artifacts that must be built on the device (a TensorRT bundle on an x86 host) appear as
`pending`, with fidelity measured here where the same graph runs (the QDQ ONNX under ORT).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np

from ..artifacts import Artifact, write_json_atomic
from ..backends import get_backend
from ..config import BuildConfig
from ..progress import progress_bar
from ..targets import TargetProfile
from .fidelity import fidelity, run_all
from .host import describe_host
from .latency import measure_latency

RUNNABLE_KINDS = ("onnx", "openvino-ir", "trt-engine")
BENCH_JSON = Path("bench") / "bench.json"


def model_file(artifact: Artifact, root: Path) -> Path:
    path = artifact.abspath(root)
    return path / "model.xml" if artifact.kind == "openvino-ir" else path


def _runner(artifact: Artifact, root: Path, device: str, threads: int | None):
    return get_backend(artifact.backend).runner(model_file(artifact, root), device=device, threads=threads)


def run(cfg: BuildConfig, artifacts: dict[str, Artifact], workdir: Path, target: TargetProfile) -> Artifact:
    evalset = artifacts["evalset"].abspath(workdir)
    inputs = np.load(evalset / "inputs.npy")
    teacher_logits = np.load(evalset / "teacher_logits.npy") if (evalset / "teacher_logits.npy").is_file() else None
    warmup = cfg.bench.warmup if cfg.bench.warmup is not None else target.bench_warmup
    iterations = cfg.bench.iterations if cfg.bench.iterations is not None else target.bench_iterations
    threads = cfg.bench.threads or target.bench_threads
    on_host, why_not = target.runs_on_this_host()
    with get_backend("onnxruntime").runner(artifacts["onnx-fp32"].abspath(workdir), threads=threads) as ref_runner:
        reference = run_all(ref_runner, inputs)
    rows = []
    candidates = [a for a in artifacts.values() if a.kind in RUNNABLE_KINDS and (on_host or a.kind == "onnx")]
    if not on_host:
        candidates = [a for a in candidates if a.name == "onnxruntime-int8"]  # fidelity only
    with progress_bar() as bar:
        task = bar.add_task("bench", total=len(candidates), info="")
        for artifact in candidates:
            bar.update(task, info=artifact.name)
            rows.append(_measure(artifact, workdir, target, inputs, reference, teacher_logits, warmup, iterations, threads, cfg, timed=on_host))
            bar.advance(task)
    if not on_host:
        rows = _pending_rows(artifacts, rows, target, why_not)
    bench = {
        "schema": "edgedistill.bench/1",
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "build": {"dir": str(workdir), "student": artifacts["student"].extra.get("architecture", ""), "teacher": cfg.teacher.name},
        "target": {k: getattr(target, k) for k in ("name", "device", "min_cosine", "min_top1_agreement", "peak_tflops_fp32", "peak_tflops_fp16", "peak_tops_int8", "bandwidth_gbs")},
        "host": describe_host(),
        "eval": {"images": int(len(inputs)), "source": cfg.data.source, "teacher_has_classifier": teacher_logits is not None},
        "artifacts": rows,
    }
    path = workdir / BENCH_JSON
    write_json_atomic(path, bench)
    return Artifact.record(workdir, path, kind="bench", name="bench", parents=[a.name for a in candidates], config_hash=cfg.section_hash("bench"))


def _measure(artifact, workdir, target, inputs, reference, teacher_logits, warmup, iterations, threads, cfg, timed: bool) -> dict:
    device = target.device if artifact.backend != "onnxruntime" else "CPU"
    row = {"name": artifact.name, "path": artifact.path, "backend": artifact.backend, "precision": artifact.precision,
           "device": device, "size_mb": round(artifact.size / 1e6, 3), "batch": cfg.bench.batch, "threads": threads}
    try:
        with _runner(artifact, workdir, device, threads) as runner:
            outputs = run_all(runner, inputs)
            row["fidelity"] = fidelity(outputs, reference, teacher_logits)
            row["runtime_settings"] = runner.runtime_settings()
            if timed:
                stats = measure_latency(runner, {"input": inputs[: cfg.bench.batch]}, warmup, iterations, cfg.bench.time_budget_s)
                row.update(status="measured", latency_ms=stats.as_dict(), throughput_ips=round(cfg.bench.batch * 1000.0 / stats.mean, 2), notes="")
    except Exception as exc:  # one broken artifact must not hide the others' results
        row.update(status="failed", latency_ms=None, throughput_ips=None, fidelity=row.get("fidelity"), notes=f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}")
    return row


def _pending_rows(artifacts: dict[str, Artifact], host_rows: list[dict], target: TargetProfile, why_not: str) -> list[dict]:
    """Rows for engines still to be built on the device; int8 fidelity comes from the QDQ graph under ORT here."""
    bundle = artifacts.get("tensorrt-bundle")
    fidelity_by_precision = {r["precision"]: r.get("fidelity") for r in host_rows}
    rows = []
    for precision in (bundle.extra.get("precisions", []) if bundle else []):
        rows.append({
            "name": f"tensorrt-{precision}", "path": bundle.path, "backend": "tensorrt", "precision": precision, "device": target.device,
            "status": "pending", "size_mb": None, "batch": 1, "threads": None, "latency_ms": None, "throughput_ips": None,
            "fidelity": fidelity_by_precision.get(precision) if precision == "int8" else None,
            "notes": f"build on the device ({why_not}); int8 fidelity measured on this host with ONNX Runtime on the same QDQ graph" if precision == "int8" else f"build on the device ({why_not})",
        })
    return rows
