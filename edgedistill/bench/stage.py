"""Stage `bench`: time every artifact that runs here and measure its fidelity -> bench/bench.json.

On a target that does not run here (a Jetson seen from an x86 host), each artifact the device
will run gets an `estimated` row (roofline x learned efficiency) with fidelity measured here
where the same graph runs (the QDQ ONNX under ORT), or a `pending` row when it cannot be estimated.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np

from ..artifacts import RUNNABLE_KINDS, Artifact, model_digest, strict_json, write_json_atomic
from ..backends import get_backend
from ..config import BuildConfig
from ..list_settings import parse_cpus
from ..progress import progress_bar
from ..targets import TargetProfile
from .affinity import require_usable
from .device_rows import batch_outside_engine, device_rows
from .estimate.apply import add_roofline, estimate_row, predict_measured
from .estimate.efficiency import PRIOR_EFFICIENCY, fit, load_samples, samples_of
from .estimate.peaks import from_target, host_cpu
from ..errors import EdgedistillError
from .host import describe_host
from .labelled import load_labelled
from .measure import Plan, measure
from .throughput import batch_sizes
from .zero_shot import load_zero_shot

BENCH_JSON = Path("bench") / "bench.json"
# With bench.time_budget_s and no bench.iterations the budget decides; this only stops a tiny model
# from filling memory with samples (100000 runs of 20 µs is 2 s).
MAX_BUDGET_ITERATIONS = 100_000


def bench_threads(asked: int | None, cpus: set[int], target_default: int | None) -> int | None:
    """bench.threads when set; else one thread per pinned CPU, so the runtime does not oversubscribe
    the CPUs the user pinned (the target's default, e.g. 4 on arm64-cpu, would); else the target's."""
    return asked or (len(cpus) if cpus else None) or target_default


def bench_iterations(asked: int | None, time_budget_s: float | None, target_default: int) -> int:
    """bench.iterations when set; else, with a time budget, MAX_BUDGET_ITERATIONS so the budget alone
    ends timing (the target's count would cut a 60 s budget to 100 runs of a fast model); else the target's."""
    if asked is not None:
        return asked
    return MAX_BUDGET_ITERATIONS if time_budget_s is not None else target_default


def _plan(cfg: BuildConfig, artifacts: dict[str, Artifact], workdir: Path, target: TargetProfile) -> Plan:
    evalset = artifacts["evalset"].abspath(workdir)
    inputs = np.load(evalset / "inputs.npy")
    logits = evalset / "teacher_logits.npy"
    cpus = require_usable(parse_cpus(cfg.bench.pin_cpus))
    threads = bench_threads(cfg.bench.threads, cpus, target.bench_threads)
    ref_path = artifacts["onnx-fp32"].abspath(workdir)
    with get_backend("onnxruntime").runner(ref_path, threads=threads) as ref_runner:
        reference = ref_runner.infer_all(inputs)
    labelled = task_labels = zero_shot = named = None
    if cfg.bench.eval_dir:
        x, y, classes = load_labelled(cfg.bench.eval_dir, artifacts["onnx-fp32"].data_config, cfg.bench.eval_max_images)
        labelled, named = (x, y), (classes, y)
        task_labels = logits_columns(artifacts.get("student"), classes, y)
    if cfg.bench.zero_shot_head:
        teacher = evalset / "teacher_embedding.npy"
        zero_shot = load_zero_shot(cfg, reference["embedding"], np.load(teacher) if teacher.is_file() else None, named)
    return Plan(inputs, reference, np.load(logits) if logits.is_file() else None,
                warmup=cfg.bench.warmup if cfg.bench.warmup is not None else target.bench_warmup,
                iterations=bench_iterations(cfg.bench.iterations, cfg.bench.time_budget_s, target.bench_iterations),
                time_budget_s=cfg.bench.time_budget_s, batch=cfg.bench.batch,
                batch_sizes=batch_sizes(cfg.bench.batch_sizes, cfg.bench.batch, target.batch_opt, target.batch_max),
                threads=threads, cpus=cpus, labelled=labelled, knn_k=cfg.bench.knn_k, task_labels=task_labels,
                zero_shot=zero_shot)


def logits_columns(student: Artifact | None, classes: list[str], labels: np.ndarray) -> np.ndarray | None:
    """Each labelled image's column in the `logits` output, when the student recorded its class names
    (distill/class_names.py, or step 3's folder) and they include every class of the folder; else None."""
    named = (student.extra.get("classes") if student is not None else None) or []
    if not named or not set(classes) <= set(named):
        return None
    return np.asarray([named.index(name) for name in classes], dtype=np.int64)[labels]


def device_for(backend: str, target: TargetProfile) -> str:
    """Where an artifact runs on the target's host: the target's device for its own runtimes (ONNX Runtime
    on nvidia-gpu's GPU too), the CPU for the others (e.g. the fp32 ONNX Runtime reference on an OpenVINO GPU)."""
    return target.device if backend in target.backends else "CPU"


def run(cfg: BuildConfig, artifacts: dict[str, Artifact], workdir: Path, target: TargetProfile) -> Artifact:
    file_samples = load_samples(cfg.bench.efficiency_from)  # before timing: a missing file failed once every artifact was timed
    plan = _plan(cfg, artifacts, workdir, target)
    on_host, why_not = target.runs_on_this_host()
    host = describe_host()
    # Off the device, everything that runs here is still run once for its fidelity (same graph).
    candidates = [a for a in artifacts.values() if a.kind in RUNNABLE_KINDS and (on_host or a.kind == "onnx")]
    rows = []
    with progress_bar() as bar:
        task = bar.add_task("bench", total=len(candidates), info="")
        for artifact in candidates:
            bar.update(task, info=artifact.name)
            rows.append(measure(artifact, workdir, device_for(artifact.backend, target) if on_host else "CPU", plan, timed=on_host))
            bar.advance(task)
    if rows and all(r.get("status") == "failed" for r in rows):  # nothing measured: a failed stage, not a complete build
        raise EdgedistillError(f"every artifact failed to run here, e.g. {rows[0]['name']}: {rows[0].get('notes') or 'no reason given'}",
                               "fix that cause (bench settings, runtime installation), then run edgedistill bench again")
    onnx_paths = {a.name: a.abspath(workdir) for a in artifacts.values() if a.kind == "onnx"}
    peaks = from_target(target) or (host_cpu(host, plan.threads or len(plan.cpus) or host.get("cores_physical") or 1) if on_host else None)
    if on_host:
        if peaks is not None:
            add_roofline(rows, onnx_paths, peaks, target.device)
            predict_measured(rows, file_samples, target.name)
    else:
        rows = device_rows(artifacts, rows, target, why_not, plan.batch)
        for row in rows:  # a row at a batch its engine rejects stays pending: its note says why
            if row["status"] != "pending" or batch_outside_engine(row["backend"], row["batch"], target):
                continue
            if peaks is None:  # a profile with no published figures at all: said, as a profile missing one of them is
                row["notes"] = f"{row.get('notes', '')}; no estimate: the target profile {target.name} gives no peak figures (set " \
                               "peak_tflops_fp32, peak_tflops_fp16 or peak_tops_int8, and bandwidth_gbs, in it to estimate its rows)".lstrip("; ")
            else:
                estimate_row(row, onnx_paths, peaks, target.name, target.device, file_samples)
    run_samples = samples_of({"target": {"name": target.name}, "artifacts": rows}, "this run")
    bench = {
        "schema": "edgedistill.bench/1",
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "build": {"dir": str(workdir), "student": artifacts["student"].extra.get("architecture", ""), "teacher": cfg.teacher.name,
                  "student_sha256": model_digest(artifacts["student"])},  # which model: merge tells two builds' apart by it
        # backends, precisions: with device, which rows are the target's own (report/select.py); the rest never compete
        # description and toolchain: which device and TensorRT/JetPack the estimated and pending rows are for
        "target": {k: getattr(target, k) for k in ("name", "description", "device", "dla_core", "backends", "precisions", "min_cosine",
                                                   "min_top1_agreement", "selection_tolerance", "tensorrt_version", "jetpack",
                                                   "peak_tflops_fp32", "peak_tflops_fp16", "peak_tops_int8", "bandwidth_gbs")},
        "host": host,
        "eval": _eval_section(cfg, plan, artifacts),
        "settings": {"warmup": plan.warmup, "iterations": plan.iterations, "time_budget_s": plan.time_budget_s, "batch": plan.batch,
                     "batch_sizes": plan.batch_sizes, "threads": plan.threads, "pinned_cpus": sorted(plan.cpus) or None,
                     "timer": "time.perf_counter around Runner._infer_impl (host wall clock, includes input/output copies)"},
        "estimator": {"peaks": peaks.as_dict() if peaks else None, "efficiency": fit(run_samples),
                      "efficiency_from": fit(file_samples) | {"files": list(cfg.bench.efficiency_from)}, "prior_efficiency": PRIOR_EFFICIENCY,
                      "method": "sum over ONNX ops of max(FLOPs / peak compute, bytes / bandwidth), divided by the efficiency factor"},
        "artifacts": rows,
    }
    path = workdir / BENCH_JSON
    write_json_atomic(path, strict_json(bench))  # NaN/inf as report.json writes them: strict JSON
    return Artifact.record(workdir, path, kind="bench", name="bench", parents=[a.name for a in candidates], config_hash=cfg.section_hash("bench"))


def _eval_section(cfg: BuildConfig, plan: Plan, artifacts: dict[str, Artifact]) -> dict:
    section = {"images": int(len(plan.inputs)), "source": cfg.data.source, "teacher_has_classifier": plan.teacher_logits is not None}
    if plan.labelled is not None:
        section["labelled"] = {"dir": str(cfg.bench.eval_dir), "images": int(len(plan.labelled[1])), "classes": int(len(set(plan.labelled[1].tolist())))}
    return section
