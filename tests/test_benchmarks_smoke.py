"""The distillation benchmarks still run against the engine (their --tiny CPU modes): a refactor
that breaks a benchmark shows here, not on the next GPU session. Figures are not checked: timings
belong in the benchmarks, not in tests."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _run(script: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "EDGEDISTILL_NO_PROGRESS": "1", "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), *args], env=env, capture_output=True, text=True, timeout=600)


def test_throughput_benchmark_counts_flops_for_each_mode(tmp_path):
    run = _run("distill_throughput.py", "--tiny", "--steps", "1", "--modes", "naive-fp32,online-bf16,online-overlap,cached-bf16", "--out", str(tmp_path))
    assert run.returncode == 0, run.stderr[-3000:]
    rows = {r["mode"]: r for r in json.loads((tmp_path / "distill_throughput.json").read_text())["rows"]}
    assert set(rows) == {"naive-fp32", "online-bf16", "online-overlap", "cached-bf16"}
    # counted apart: the pipelined step still runs one teacher forward per student step
    assert rows["online-overlap"]["tflops_per_step"] == rows["online-bf16"]["tflops_per_step"]
    # the online step runs the teacher too; the naive step does the same arithmetic as online
    assert rows["online-bf16"]["tflops_per_step"] > rows["cached-bf16"]["tflops_per_step"] > 0
    assert rows["naive-fp32"]["tflops_per_step"] > rows["cached-bf16"]["tflops_per_step"]


FMNIST_PRESENT = Path("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz").is_file()


@pytest.mark.skipif(not FMNIST_PRESENT, reason="Fashion-MNIST is not installed here")
def test_transfer_set_benchmark_scores_every_class():
    run = _run("transfer_set.py", "--pool", "60", "--targets", "2", "--per-target", "3", "--no-doc")
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.count("| ") > 10 and "| **mean** |" in run.stdout


@pytest.mark.skipif(not FMNIST_PRESENT, reason="Fashion-MNIST is not installed here")
def test_transfer_quality_benchmark_distils_from_both_sets(tmp_path):
    run = _run("transfer_quality.py", "--pool", "200", "--size", "40", "--steps", "2", "--probe-images", "80", "--no-doc", "--out", str(tmp_path))
    assert run.returncode == 0, run.stderr[-3000:]
    rows = json.loads((tmp_path / "transfer_quality.json").read_text())
    assert [r["transfer set"] for r in rows] == ["retrieved", "random", "none (random-init student)"]
    assert rows[0]["images"] == rows[1]["images"] == 40


@pytest.mark.skipif(not FMNIST_PRESENT, reason="Fashion-MNIST is not installed here")
def test_dime_fm_quality_benchmark_scores_the_four_runs(tmp_path):
    run = _run("dime_fm_quality.py", "--images", "60", "--eval-images", "40", "--probe-images", "40", "--steps", "2", "--no-doc", "--out", str(tmp_path))
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads((tmp_path / "dime_fm_quality.json").read_text())
    assert [r["run"] for r in result["rows"]] == ["Proteus (token, patch, feature)", "Proteus + DIME-FM (vl, pvl)", "DIME-FM (vl, pvl) + token level",
                                                  "Proteus + task outputs (logit KD, T=1)"]
    assert result["logit_scale"] > 1 and all(0 <= r["logits_top1"] <= 1 and r["kl"] >= 0 for r in result["rows"])


@pytest.mark.skipif(not FMNIST_PRESENT, reason="Fashion-MNIST is not installed here")
def test_task_transfer_quality_benchmark_scores_all_three_steps(tmp_path):
    run = _run("task_transfer_quality.py", "--labelled", "3", "--images", "60", "--test", "40", "--steps", "2", "--finetune-steps", "2",
               "--no-doc", "--out", str(tmp_path))
    assert run.returncode == 0, run.stderr[-3000:]
    rows = json.loads((tmp_path / "task_transfer_quality.json").read_text())["rows"]
    assert rows[0]["model"].startswith("teacher:") and all(0 <= r["test_top1"] <= 1 for r in rows)
    deployed = [r["model"] for r in rows if r["model"].startswith("... deployed")]
    assert len(rows) == 6 + len(deployed) and any("onnxruntime-int8" in name for name in deployed)


@pytest.mark.skipif(not FMNIST_PRESENT, reason="Fashion-MNIST is not installed here")
def test_head_init_quality_benchmark_scores_the_probe_and_both_starts(tmp_path):
    run = _run("head_init_quality.py", "--labelled", "3", "--test", "40", "--steps", "2", "--no-doc", "--out", str(tmp_path))
    assert run.returncode == 0, run.stderr[-3000:]
    rows = json.loads((tmp_path / "head_init_quality.json").read_text())["rows"]
    assert [r["model"].split(" (")[0] for r in rows] == ["linear probe of the frozen teacher", "fine-tuned from timm's random head",
                                                          "fine-tuned from the linear probe"]
    assert all(0 <= r["test_top1"] <= 1 for r in rows)


def test_view_decode_benchmark_compares_the_same_views(tmp_path):
    run = _run("view_decode.py", "--count", "2", "--views", "2", "--size", "32", "--repeats", "1", "--out", str(tmp_path))
    assert run.returncode == 0, run.stderr[-3000:]
    rows = json.loads((tmp_path / "view_decode.json").read_text())["rows"]
    assert [r["views_per_image"] for r in rows] == [2] and rows[0]["speedup"] > 0


def test_gpu_session_runs_steps_in_the_order_asked_and_refuses_unknown_ones(tmp_path):
    """The next GPU session's first call, checked on the CPU (TINY): compiled modes included, steps in
    STEPS order, a step name it does not know stops it before any step runs."""
    import tarfile

    env = {**os.environ, "TINY": "1", "PY": sys.executable, "OUT": str(tmp_path / "out"), "SCRATCH": str(tmp_path / "scratch")}
    typo = subprocess.run(["bash", "benchmarks/gpu_session.sh"], cwd=ROOT, env={**env, "STEPS": "throughput-overlapp"},
                          capture_output=True, text=True, timeout=120)
    assert typo.returncode == 2 and "unknown step 'throughput-overlapp'" in typo.stderr
    run = subprocess.run(["bash", "benchmarks/gpu_session.sh"], cwd=ROOT, env={**env, "STEPS": "throughput-overlap throughput-bf16-teacher"},
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-3000:]
    steps = (tmp_path / "out" / "steps.txt").read_text()
    assert steps.index("== throughput-overlap:") < steps.index("== throughput-bf16-teacher: skipped")
    with tarfile.open(tmp_path / "out" / "results.tgz") as packed:
        result = json.load(packed.extractfile("./throughput-overlap/distill_throughput.json"))
    assert {r["mode"] for r in result["rows"]} == {"online-bf16", "online-overlap", "online-compiled", "online-compiled-overlap"}


def test_int8_fallback_benchmark_writes_every_figure_docs_backends_quotes(tmp_path):
    """About a minute: the script behind docs/backends.md's EfficientNet-Lite0 INT8 table."""
    run = _run("int8_fallback.py", "--tiny", "--out", str(tmp_path))
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads((tmp_path / "int8_fallback.json").read_text())
    names = [r["name"] for r in result["rows"]]
    assert names[0] == "plain (every Conv/Gemm)" and names[2].startswith("default") and len(names) == 7
    assert names[-2:] == ["OpenVINO NNCF INT8, cnn scheme", "OpenVINO NNCF INT8, transformer scheme"]
    assert all(0 < r["cosine"] <= 1.0001 for r in result["rows"]) and result["leave_one_out"]["layers_tried"] == 2
    assert "| INT8 on EfficientNet-Lite0 |" in run.stdout


def test_openvino_throughput_benchmark_times_bench_against_benchmark_app(tiny_build):
    """The script behind docs/benchmarking.md's async check: every OpenVINO IR of a build, bench's async
    figure beside the sync one and benchmark_app's, which must run at the runner's precision hint."""
    run = _run("ov_throughput.py", "--build", str(tiny_build), "--rounds", "1", "--seconds", "1", "--batches", "1", "--no-doc")
    assert run.returncode == 0, run.stderr[-3000:]
    rows = [line.split(" | ") for line in run.stdout.splitlines() if line.startswith("| openvino-")]
    assert sorted(r[0] for r in rows) == ["| openvino-fp32", "| openvino-int8"]
    assert all(r[2] == "f32" and float(r[5]) > 0 and float(r[4]) > 0 for r in rows)  # benchmark_app matched the f32 hint
