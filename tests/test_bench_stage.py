"""The bench stage on a small real build folder: measured rows here, estimated rows for a Jetson,
and the report replacing those estimates with a Jetson's measurements (TensorRT is mocked by
that recorded bench.json; everything else runs for real)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edgedistill.artifacts import Artifact
from edgedistill.backends.openvino_backend import convert_to_ir
from edgedistill.bench import stage
from edgedistill.config import QuantizeConfig, load_config
from edgedistill.errors import EdgedistillError
from edgedistill.quantize.ort_static import quantize_ort_static
from edgedistill.report import make_report, merge_reports
from edgedistill.targets import load_target

from .test_bench_fixtures import embedder

DATA = Path(__file__).parent / "data"
DATA_CONFIG = {"input_size": [3, 16, 16], "interpolation": "bicubic", "mean": [0.5] * 3, "std": [0.25] * 3, "crop_pct": 1.0, "crop_mode": "center"}


@pytest.fixture(scope="module")
def build(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("build")
    rng = np.random.default_rng(0)
    inputs = rng.standard_normal((12, 3, 16, 16)).astype(np.float32)
    (root / "student").mkdir()
    (root / "student" / "student.json").write_text("{}")
    (root / "eval").mkdir()
    np.save(root / "eval" / "inputs.npy", inputs)
    np.save(root / "eval" / "teacher_logits.npy", rng.standard_normal((12, 10)).astype(np.float32))
    embedder(root / "model.onnx")
    (root / "quantized").mkdir()
    quantize_ort_static(root / "model.onnx", root / "quantized" / "model.int8.qdq.onnx", inputs, QuantizeConfig())
    convert_to_ir(root / "model.onnx", root / "openvino" / "fp32" / "model.xml")
    (root / "trt_bundle").mkdir()
    (root / "trt_bundle" / "bundle.json").write_text("{}")
    arts = [
        Artifact.record(root, root / "student", kind="student", name="student", extra={"architecture": "tiny-embedder"}),
        Artifact.record(root, root / "model.onnx", kind="onnx", name="onnx-fp32", backend="onnxruntime", precision="fp32", data_config=DATA_CONFIG),
        Artifact.record(root, root / "eval", kind="evalset", name="evalset"),
        Artifact.record(root, root / "quantized" / "model.int8.qdq.onnx", kind="onnx", name="onnxruntime-int8", backend="onnxruntime", precision="int8"),
        Artifact.record(root, root / "openvino" / "fp32", kind="openvino-ir", name="openvino-fp32", backend="openvino", precision="fp32"),
        Artifact.record(root, root / "trt_bundle", kind="trt-bundle", name="tensorrt-bundle", backend="tensorrt", status="pending",
                        extra={"precisions": ["fp16", "int8"]}),
    ]
    return root, {a.name: a for a in arts}


def _labelled(root: Path) -> Path:
    folder = root / "labelled"
    rng = np.random.default_rng(1)
    for cls, level in (("dark", 40), ("light", 210)):
        (folder / cls).mkdir(parents=True, exist_ok=True)
        for i in range(6):
            Image.fromarray(np.clip(rng.normal(level, 20, (20, 20)), 0, 255).astype(np.uint8)).save(folder / cls / f"{i}.png")
    return folder


def test_measured_rows_on_this_host(build):
    root, arts = build
    cfg = load_config(overrides=["bench.warmup=1", "bench.iterations=5", "bench.batch_sizes=[1, 2]", "bench.pin_cpus=[0]",
                                 f"bench.eval_dir={_labelled(root)}"])
    stage.run(cfg, arts, root, load_target("x86-cpu"))
    doc = json.loads((root / "bench" / "bench.json").read_text())
    rows = {r["name"]: r for r in doc["artifacts"]}
    assert set(rows) == {"onnx-fp32", "onnxruntime-int8", "openvino-fp32"}
    for row in rows.values():
        assert row["status"] == "measured", row["notes"]
        assert row["latency_ms"]["iterations"] == 5 and row["threads"] == 1  # pinned to 1 CPU -> 1 thread
        assert [t["batch"] for t in row["throughput"]] == [1, 2]
        # OpenVINO's img/s comes from its THROUGHPUT-hint async queue, the others' from one sync request; the row's is batch 1's
        assert {t["mode"] for t in row["throughput"]} == ({"async"} if row["backend"] == "openvino" else {"sync"})
        assert row["throughput_ips"] == row["throughput"][0]["throughput_ips"] and row["latency_ms"]["stopped_by"] == "iterations"
        assert row["memory"]["peak_rss_mb"] >= row["memory"]["rss_before_mb"] and row["size_mb"] > 0
        assert row["roofline_ms"] > 0 and row["runtime_settings"]["pinned_cpus"] == [0]
        assert row["fidelity"]["knn_top1"] == 1.0 and 0 <= row["fidelity"]["linear_probe_top1"] <= 1
    assert rows["onnx-fp32"]["fidelity"]["cosine_vs_fp32"] == pytest.approx(1.0)
    assert doc["eval"]["labelled"] == {"dir": str(root / "labelled"), "images": 12, "classes": 2}
    assert doc["settings"]["pinned_cpus"] == [0] and doc["estimator"]["peaks"]["source"].startswith("derived")
    assert doc["estimator"]["efficiency"]["samples"] == 3 and doc["host"]["cpu_affinity"]
    (root / "host-bench.json").write_text(json.dumps(doc))


def test_jetson_rows_are_estimated_then_replaced_by_measurements(build):
    root, arts = build
    host_bench = root / "host-bench.json"
    if not host_bench.is_file():
        pytest.skip("needs test_measured_rows_on_this_host first")
    cfg = load_config(overrides=[f"bench.efficiency_from=[{host_bench}]"])
    stage.run(cfg, arts, root, load_target("jetson-orin"))
    doc = json.loads((root / "bench" / "bench.json").read_text())
    rows = {r["name"]: r for r in doc["artifacts"]}
    assert set(rows) == {"tensorrt-fp16", "tensorrt-int8"}  # the names the Jetson's own bench writes
    for row in rows.values():
        assert row["status"] == "estimated" and "latency" not in row.get("memory", {})
        assert row["latency_ms"]["p50"] == pytest.approx(row["estimate"]["roofline_ms"] / row["estimate"]["efficiency"], rel=1e-3)
        # the CPU's runs say nothing about a GPU's efficiency: the prior, saying why
        assert row["estimate"]["efficiency_source"].startswith("prior, not learned: bench.efficiency_from has runs on x86-cpu (CPU) only, not on a GPU")
        assert "roofline estimate" in row["notes"]
    assert rows["tensorrt-int8"]["fidelity"]["cosine_vs_fp32"] > 0.9  # measured here on the same QDQ graph
    assert rows["tensorrt-int8"]["estimate"]["gop_int8"] > 0
    report = make_report(doc)
    assert report["selected"]["artifact"] is None  # an estimate never gets selected
    jetson = json.loads((DATA / "report_jetson_bench.json").read_text())
    jetson["build"].update({k: doc["build"][k] for k in ("student", "teacher", "student_sha256")})  # this build, benched on the Jetson
    merged = merge_reports([report, jetson])
    for row in (r for r in merged["rows"] if r["target"] == "jetson-orin"):
        assert row["status"] == "measured" and row["replaces"][0]["status"] == "estimated"
        assert isinstance(row["estimate_error_pct"], float)
    jetson["build"]["student_sha256"] = "another student's weights"
    other = merge_reports([report, jetson])
    assert sorted(r["status"] for r in other["rows"] if r["target"] == "jetson-orin") == ["estimated"] * 2 + ["measured"] * 2

    stage.run(load_config(overrides=[f"bench.efficiency_from=[{host_bench}]", "bench.batch=4"]), arts, root, load_target("jetson-orin"))
    at_four = json.loads((root / "bench" / "bench.json").read_text())
    assert {r["batch"] for r in at_four["artifacts"]} == {4}  # estimated at the batch the device's bench will run
    jetson["build"]["student_sha256"] = doc["build"]["student_sha256"]
    merged = merge_reports([make_report(at_four), jetson])  # the recorded Jetson run was at batch 1
    assert all(r["estimate_error_pct"] is None for r in merged["rows"] if r["target"] == "jetson-orin")


def test_each_runtime_runs_on_the_targets_device_when_it_is_the_targets():
    from edgedistill.bench.estimate.apply import add_roofline

    assert stage.device_for("onnxruntime", load_target("nvidia-gpu")) == "GPU"  # it timed ONNX Runtime on the CPU
    assert stage.device_for("onnxruntime", load_target("intel-gpu")) == "CPU"  # the fp32 reference, not the target's runtime
    assert stage.device_for("openvino", load_target("intel-gpu")) == "GPU"
    row = {"status": "measured", "device": "CPU", "name": "onnx-fp32", "precision": "fp32", "latency_ms": {"p50": 1.0}}
    add_roofline([row], {}, None, "GPU")  # a CPU row on a GPU target: its roofline would be at the GPU's peaks
    assert "roofline_ms" not in row


def test_without_peaks_a_device_row_stays_pending(build, tmp_path):
    root, arts = build
    profile = tmp_path / "mystery.yaml"
    profile.write_text("name: mystery\narch: aarch64\ndevice: CPU\nbackends: [onnxruntime]\nprecisions: [fp32]\n")
    stage.run(load_config(), arts, root, load_target(str(profile)))
    doc = json.loads((root / "bench" / "bench.json").read_text())
    assert {r["status"] for r in doc["artifacts"]} == {"pending"}
    assert {r["name"] for r in doc["artifacts"]} == {"onnx-fp32", "onnxruntime-int8"}
    # and says why, as a profile missing one figure does (docs/benchmarking.md: its note names what is missing)
    assert all("no estimate: the target profile mystery gives no peak figures" in r["notes"] for r in doc["artifacts"])


def test_pinned_cpus_set_the_thread_count_unless_bench_threads_does():
    from edgedistill.bench.stage import bench_threads

    assert bench_threads(None, {0, 1}, 4) == 2  # arm64-cpu's default of 4 would oversubscribe 2 pinned CPUs
    assert bench_threads(3, {0, 1}, 4) == 3 and bench_threads(None, set(), 4) == 4 and bench_threads(None, set(), None) is None


def test_bench_json_is_strict_json_and_a_nan_read_back_still_fails(build, monkeypatch):
    root, arts = build
    real = stage.measure

    def nan_int8(artifact, *args, **kwargs):
        row = real(artifact, *args, **kwargs)
        if artifact.name == "onnxruntime-int8":
            row["fidelity"]["cosine_vs_fp32"] = float("nan")  # e.g. an int8 graph whose outputs overflow
        return row

    monkeypatch.setattr(stage, "measure", nan_int8)
    stage.run(load_config(overrides=["bench.warmup=0", "bench.iterations=2", "bench.batch_sizes=[1]"]), arts, root, load_target("x86-cpu"))

    def refuse(constant):
        raise ValueError(f"not strict JSON: {constant}")

    doc = json.loads((root / "bench" / "bench.json").read_text(), parse_constant=refuse)
    assert doc["target"]["backends"] == ["onnxruntime", "openvino"]  # which rows are the target's own
    int8 = next(r for r in doc["artifacts"] if r["name"] == "onnxruntime-int8")
    assert int8["fidelity"]["cosine_vs_fp32"] == "nan"  # as docs/report-schema.md says, and report.json writes it
    doc["target"]["min_cosine"] = 2.0  # nobody meets it: the reason lists each miss, read back as NaN
    assert "onnxruntime-int8: cosine nan is not finite" in make_report(doc)["selected"]["reason"]


def test_a_time_budget_alone_decides_how_long_timing_runs(build):
    root, arts = build
    x86 = load_target("x86-cpu")
    plan = stage._plan(load_config(overrides=["bench.time_budget_s=2"]), arts, root, x86)
    assert plan.iterations == stage.MAX_BUDGET_ITERATIONS  # not the target's 100, which a fast model runs in ms
    assert stage._plan(load_config(overrides=["bench.time_budget_s=2", "bench.iterations=50"]), arts, root, x86).iterations == 50
    assert stage._plan(load_config(), arts, root, x86).iterations == x86.bench_iterations


def test_threads_are_the_count_each_runtime_ran_with(build):
    import psutil

    root, arts = build
    stage.run(load_config(overrides=["bench.warmup=0", "bench.iterations=2", "bench.batch_sizes=[1]"]), arts, root, load_target("x86-cpu"))
    doc = json.loads((root / "bench" / "bench.json").read_text())
    rows = {r["name"]: r for r in doc["artifacts"]}
    assert doc["settings"]["threads"] is None  # nothing asked: each runtime's default
    # OpenVINO says what it chose; ONNX Runtime left to its default runs one thread per physical core
    assert rows["openvino-fp32"]["threads"] == rows["openvino-fp32"]["runtime_settings"]["INFERENCE_NUM_THREADS"] >= 1
    assert rows["onnx-fp32"]["runtime_settings"]["intra_op_num_threads"] == "default"
    assert rows["onnx-fp32"]["threads"] == rows["onnxruntime-int8"]["threads"] == psutil.cpu_count(logical=False)


def test_onnxruntimes_default_pool_has_one_thread_per_physical_core(build, tmp_path):
    # what report.json's threads says for ONNX Runtime left to its default, checked against the threads it starts:
    # a pool of n has n - 1 workers beside the calling thread (in a fresh process, with one CPU allowed: affinity does not count)
    import os
    import subprocess
    import sys

    import psutil

    root, _ = build
    script = ("import os, onnxruntime as ort; before = len(os.listdir('/proc/self/task')); "
              f"session = ort.InferenceSession({str(root / 'model.onnx')!r}, providers=['CPUExecutionProvider']); "
              "print(len(os.listdir('/proc/self/task')) - before + 1)")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, env=env,
                         preexec_fn=lambda: os.sched_setaffinity(0, {min(os.sched_getaffinity(0))}))
    assert int(out.stdout.split()[-1]) == psutil.cpu_count(logical=False)


def test_the_target_record_names_the_device_and_its_toolchain(build, tmp_path):
    from edgedistill.report import render_html, render_markdown

    root, arts = build
    profile = tmp_path / "orin-nano.yaml"
    profile.write_text("name: orin-nano\ndescription: Jetson Orin Nano 8GB\narch: aarch64\nbackends: [onnxruntime]\nprecisions: [fp32]\n"
                       "device: GPU\ndla_core: 0\ntensorrt_version: '10.3'\njetpack: '6.1'\n")
    stage.run(load_config(), arts, root, load_target(str(profile)))
    report = make_report(json.loads((root / "bench" / "bench.json").read_text()))
    assert {k: report["target"][k] for k in ("description", "tensorrt_version", "jetpack", "dla_core")} == {
        "description": "Jetson Orin Nano 8GB", "tensorrt_version": "10.3", "jetpack": "6.1", "dla_core": 0}
    for rendered in (render_markdown(report), render_html(report)):  # under the target's heading
        assert "Jetson Orin Nano 8GB; TensorRT 10.3, JetPack 6.1, DLA core 0" in rendered


def test_each_pending_row_gives_its_own_backends_reason(build, tmp_path, monkeypatch):
    from edgedistill.backends.onnxruntime_backend import OnnxRuntimeBackend
    from edgedistill.backends.tensorrt_backend import TensorRTBackend

    root, arts = build
    # this host as the tests expect it: no TensorRT, and an ONNX Runtime without a GPU provider
    monkeypatch.setattr(TensorRTBackend, "availability", lambda self: (False, "TensorRT is not installed"))
    monkeypatch.setattr(OnnxRuntimeBackend, "devices", lambda self: ["CPU"])
    profile = tmp_path / "gpu-box.yaml"  # no peaks: rows stay pending, with the reason as their whole note
    profile.write_text("name: gpu-box\narch: x86_64\nbackends: [tensorrt, onnxruntime]\nprecisions: [fp16, int8]\ndevice: GPU\n")
    stage.run(load_config(), arts, root, load_target(str(profile)))
    notes = {r["name"]: r["notes"] for r in json.loads((root / "bench" / "bench.json").read_text())["artifacts"]}
    assert list(notes) == ["tensorrt-fp16", "tensorrt-int8", "onnx-fp32", "onnxruntime-int8"]
    assert all("(tensorrt: TensorRT is not installed)" in notes[n] for n in ("tensorrt-fp16", "tensorrt-int8"))
    for name in ("onnx-fp32", "onnxruntime-int8"):
        assert "(onnxruntime sees no GPU device here (it has: CPU))" in notes[name] and "TensorRT" not in notes[name]


def test_tensorrt_rows_at_a_batch_their_engine_rejects_stay_pending(build, tmp_path):
    """jetson-orin's engines take batch 1..8 (a DLA core: batch_opt only): at bench.batch=16 an estimate
    would be of a run the device cannot do, so the rows stay pending and say which batch would do."""
    from edgedistill.bench.device_rows import engine_batches

    root, arts = build
    stage.run(load_config(overrides=["bench.batch=16"]), arts, root, load_target("jetson-orin"))
    rows = json.loads((root / "bench" / "bench.json").read_text())["artifacts"]
    assert [(r["name"], r["status"], r["latency_ms"]) for r in rows] == [("tensorrt-fp16", "pending", None), ("tensorrt-int8", "pending", None)]
    for row in rows:
        assert row["notes"].endswith("not estimated: bench.batch 16 is outside the batch range 1..8 jetson-orin's TensorRT engines "
                                     "are built for, so the device cannot run it (fix: set bench.batch within 1..8)")
    stage.run(load_config(overrides=["bench.batch=8"]), arts, root, load_target("jetson-orin"))
    assert {r["status"] for r in json.loads((root / "bench" / "bench.json").read_text())["artifacts"]} == {"estimated"}
    assert engine_batches(load_target("jetson-orin-dla")) == (1, 1)
    profile = tmp_path / "dla4.yaml"
    profile.write_text("name: dla4\narch: aarch64\nbackends: [tensorrt]\nprecisions: [int8]\ndevice: DLA\ndla_core: 0\n"
                       "batch_min: 1\nbatch_opt: 4\nbatch_max: 8\n")
    assert engine_batches(load_target(str(profile))) == (4, 4)  # DLA: no dynamic shapes


def test_task_top1_scores_the_logits_columns_the_student_names(build):
    """A student that recorded its classes (finetune-teacher, step 3) is scored on the labelled folder through its
    `logits` output: each image's column is found by its class name, whatever the folder's order."""
    import onnxruntime as ort

    from edgedistill.bench.labelled import load_labelled
    from edgedistill.report.content import columns_for

    root, arts = build
    names = [f"c{i}" for i in range(10)]
    names[3], names[7] = "light", "dark"
    student = Artifact.record(root, root / "student", kind="student", name="student", extra={"architecture": "tiny-embedder", "classes": names})
    cfg = load_config(overrides=["bench.warmup=1", "bench.iterations=2", f"bench.eval_dir={_labelled(root)}"])
    stage.run(cfg, {**arts, "student": student}, root, load_target("x86-cpu"))
    rows = {r["name"]: r for r in json.loads((root / "bench" / "bench.json").read_text())["artifacts"]}
    x, y, classes = load_labelled(root / "labelled", DATA_CONFIG)
    assert classes == ["dark", "light"]
    logits = ort.InferenceSession(str(root / "model.onnx")).run(["logits"], {"input": x})[0]
    expected = float((logits.argmax(1) == np.array([7, 3])[y]).mean())
    assert rows["onnx-fp32"]["fidelity"]["task_top1"] == round(expected, 4)
    assert all("task_top1" in r["fidelity"] for r in rows.values())
    assert "task top-1" in [c.header for c in columns_for(list(rows.values()))]


def test_logits_columns_need_every_class_of_the_folder_named():
    student = Artifact(kind="student", name="student", path="student", sha256="", size=0, extra={"classes": ["a", "b", "c"]})
    assert stage.logits_columns(student, ["c", "a"], np.array([0, 1, 1])).tolist() == [2, 0, 0]
    assert stage.logits_columns(student, ["a", "z"], np.array([0, 1])) is None  # a class the logits do not score
    unnamed = Artifact(kind="student", name="student", path="student", sha256="", size=0, extra={})
    assert stage.logits_columns(unnamed, ["a", "b"], np.array([0])) is None and stage.logits_columns(None, ["a"], np.array([0])) is None


def _head(root, cfg, classes: list[str], rows: np.ndarray, teacher=None):
    """A zero-shot head file as zero-shot-head writes one, here from given rows (no text tower offline)."""
    import torch

    from edgedistill.teacher_identity import teacher_identity
    from edgedistill.distill.zero_shot_head import write_head
    from edgedistill.models.teacher import teacher_configs

    path = root / f"head-{'-'.join(classes)}-{rows.shape[1]}{'-other' if teacher else ''}.safetensors"
    write_head(path, torch.from_numpy(rows), teacher or teacher_identity(teacher_configs(cfg.teacher)[0]), classes)
    return path


def test_zero_shot_classes_are_the_nearest_head_row_to_each_embedding(build):
    """Each artifact's `embedding` is classified by its highest-cosine row of the zero-shot head. On the evaluation set
    its class is compared with the fp32 model's and the teacher's; on bench.eval_dir, each image's row is found by its
    class name (the head's own order, a class the folder lacks too) and scored against the folder's labels."""
    import onnxruntime as ort

    from edgedistill.bench.labelled import load_labelled
    from edgedistill.report.content import columns_for

    root, arts = build
    labelled = _labelled(root)
    x, y, classes = load_labelled(labelled, DATA_CONFIG)
    session = ort.InferenceSession(str(root / "model.onnx"))
    embedding = session.run(["embedding"], {"input": x})[0]
    rng = np.random.default_rng(3)
    rows = rng.standard_normal((3, embedding.shape[1])).astype(np.float32)
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)  # unit rows as the command writes; random, so some images miss
    teacher = rng.standard_normal((12, embedding.shape[1])).astype(np.float32)
    np.save(root / "eval" / "teacher_embedding.npy", teacher)
    try:
        base = ["bench.warmup=1", "bench.iterations=2"]
        head = _head(root, load_config(overrides=base), ["zebra", "light", "dark"], rows)
        stage.run(load_config(overrides=[*base, f"bench.zero_shot_head={head}"]), arts, root, load_target("x86-cpu"))
        unlabelled = {r["name"]: r for r in json.loads((root / "bench" / "bench.json").read_text())["artifacts"]}
        stage.run(load_config(overrides=[*base, f"bench.eval_dir={labelled}", f"bench.zero_shot_head={head}"]), arts, root, load_target("x86-cpu"))
        bench_rows = {r["name"]: r for r in json.loads((root / "bench" / "bench.json").read_text())["artifacts"]}
    finally:
        (root / "eval" / "teacher_embedding.npy").unlink()
    # the evaluation set, no labels needed: int8's zero-shot class against fp32's and the teacher's
    int8 = ort.InferenceSession(str(root / "quantized" / "model.int8.qdq.onnx"))
    eval_inputs = np.load(root / "eval" / "inputs.npy")
    predicted_int8 = (int8.run(["embedding"], {"input": eval_inputs})[0] @ rows.T).argmax(1)
    fp32 = (session.run(["embedding"], {"input": eval_inputs})[0] @ rows.T).argmax(1)
    versus_teacher = float((predicted_int8 == (teacher @ rows.T).argmax(1)).mean())
    assert 0 < versus_teacher < 1  # the check can tell agreement from its absence
    for measured in (unlabelled, bench_rows):
        assert measured["onnx-fp32"]["fidelity"]["zero_shot_agreement_vs_fp32"] == 1.0
        assert measured["onnxruntime-int8"]["fidelity"]["zero_shot_agreement_vs_fp32"] == pytest.approx(float((predicted_int8 == fp32).mean()))
        assert measured["onnxruntime-int8"]["fidelity"]["zero_shot_agreement_vs_teacher"] == pytest.approx(versus_teacher)
    assert not any("zero_shot_top1" in r["fidelity"] for r in unlabelled.values())
    # bench.eval_dir: the true labels
    predicted = (embedding @ rows.T).argmax(1)
    expected = float((predicted == np.array([2, 1])[y]).mean())  # dark -> row 2, light -> row 1
    assert 0 < expected < 1  # the check can tell a right mapping from a wrong one
    assert bench_rows["onnx-fp32"]["fidelity"]["zero_shot_top1"] == round(expected, 4)
    assert all("zero_shot_top1" in r["fidelity"] for r in bench_rows.values() if r["status"] == "measured")
    headers = [c.header for c in columns_for(list(bench_rows.values()))]
    assert {"zero-shot top-1", "zero-shot vs fp32", "zero-shot vs teacher"} <= set(headers)


def test_zero_shot_agreement_counts_the_images_whose_class_is_the_same():
    from edgedistill.bench.zero_shot import ZeroShot

    zero_shot = ZeroShot(np.eye(3, 4, dtype=np.float32), reference=np.array([0, 1, 2, 0]), teacher=np.array([0, 0, 2, 2]))
    embedding = np.array([[2, 0, 0, 0], [0, 1, 0, 0], [0, 0, 3, 1], [0, 1, 0.5, 0]], np.float32)  # classes 0, 1, 2, 1
    assert zero_shot.agreement(embedding) == {"zero_shot_agreement_vs_fp32": 0.75, "zero_shot_agreement_vs_teacher": 0.5}
    assert ZeroShot(zero_shot.weights, reference=np.array([0, 1, 2, 1])).agreement(embedding) == {"zero_shot_agreement_vs_fp32": 1.0}


def test_a_zero_shot_head_that_cannot_score_this_build_is_refused(build):
    from edgedistill.bench.zero_shot import check_zero_shot_head, load_zero_shot

    root, _ = build
    labelled = _labelled(root)
    base = [f"bench.eval_dir={labelled}"]
    cfg = load_config(overrides=base)
    unit = np.eye(2, 32, dtype=np.float32)
    other = _head(root, cfg, ["dark", "light"], unit, teacher={"name": "open_clip:ViT-B-32", "pretrained": False})
    with pytest.raises(EdgedistillError, match="was made by teacher 'open_clip:ViT-B-32', not this build's primary teacher"):
        check_zero_shot_head(load_config(overrides=[*base, f"bench.zero_shot_head={other}"]))
    head = _head(root, cfg, ["dark", "light"], unit)
    assert check_zero_shot_head(load_config(overrides=[f"bench.zero_shot_head={head}"]))["classes"] == ["dark", "light"]  # no labels: agreements only
    with pytest.raises(EdgedistillError, match="holds no zero-shot head"):
        check_zero_shot_head(load_config(overrides=[*base, f"bench.zero_shot_head={root / 'model.onnx'}"]))
    with pytest.raises(EdgedistillError, match="does not exist"):
        check_zero_shot_head(load_config(overrides=[*base, f"bench.zero_shot_head={root / 'missing.safetensors'}"]))
    with_head = load_config(overrides=[*base, f"bench.zero_shot_head={head}"])
    with pytest.raises(EdgedistillError, match="holds 32-d rows, the student's embedding is 16-d"):
        load_zero_shot(with_head, np.zeros((3, 16), np.float32))
    lacking = _head(root, cfg, ["dark", "grey"], unit)
    with pytest.raises(EdgedistillError, match="has no row for 1 class.* of bench.eval_dir: light"):
        check_zero_shot_head(load_config(overrides=[*base, f"bench.zero_shot_head={lacking}"]))
    cut = root / "cut.safetensors"
    cut.write_bytes(head.read_bytes()[:-40])  # the rows cut short: safetensors refuses the whole file
    with pytest.raises(EdgedistillError, match="holds no zero-shot head"):
        check_zero_shot_head(load_config(overrides=[*base, f"bench.zero_shot_head={cut}"]))
    import torch
    from safetensors import safe_open

    from edgedistill.artifacts import save_safetensors

    renamed = root / "renamed.safetensors"
    with safe_open(str(head), framework="numpy") as f:
        save_safetensors({"rows": torch.from_numpy(unit)}, renamed, metadata=f.metadata())  # the stamp kept, the tensor renamed
    with pytest.raises(EdgedistillError, match="cannot be read"):
        load_zero_shot(load_config(overrides=[*base, f"bench.zero_shot_head={renamed}"]), np.zeros((3, 32), np.float32))
    found = load_zero_shot(with_head, np.zeros((3, 32), np.float32), np.zeros((3, 16), np.float32), (["light", "dark"], np.array([0, 1, 1])))
    assert found.rows.tolist() == [1, 0, 0] and found.teacher is None  # a teacher embedding of another width compares nothing
