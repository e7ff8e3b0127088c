"""SIGTERM (what a CI cancel or timeout sends) ends a command as Ctrl-C does: temp files go, the
manifest records the failed stage. Quantize's model-sized temp folders live in the build folder,
where the next run removes those a killed run (SIGKILL) left, never in $TMPDIR."""

from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
import pytest
import onnxruntime.quantization.qdq_loss_debug as dbg
from onnx import TensorProto, helper

from edgedistill.artifacts import Manifest
from edgedistill.exits import sigterm_as_interrupt
from edgedistill.config import QuantizeConfig
from edgedistill.quantize import ort_static
from edgedistill.quantize.ort_static import quantize_ort_static
from edgedistill.quantize.scratch import SCRATCH, scratch_dir
from edgedistill.quantize.sensitivity import layer_sensitivity

from .test_disk_errors import onnx_build

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow  # a real `python -m edgedistill quantize`: about 7 s, most of it importing torch
def test_sigterm_during_quantize_removes_its_temp_files_and_records_the_failed_stage(tmp_path):
    build = onnx_build(tmp_path / "build")
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    env = dict(os.environ, TMPDIR=str(tmpdir), OMP_NUM_THREADS="1", EDGEDISTILL_NO_PROGRESS="1")
    proc = subprocess.Popen([sys.executable, "-m", "edgedistill", "quantize", str(build), "--target", "x86-cpu", "--set", "quantize.holdout_images=8"],
                            cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    quantized, deadline = build / "quantized", time.monotonic() + 120
    while not list(quantized.glob(f".{SCRATCH}.partial-*/prepared.onnx")):  # inside the INT8 search, onnxruntime imported
        assert proc.poll() is None and time.monotonic() < deadline, "quantize ended before its temp folder appeared"
        time.sleep(0.01)
    proc.send_signal(signal.SIGTERM)
    err = proc.communicate(timeout=120)[1]
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert err.strip().splitlines()[-1] == "terminated (SIGTERM)"
    assert list(quantized.iterdir()) == [] and list(tmpdir.rglob("*.onnx")) == []  # (torch keeps its own caches in $TMPDIR)
    data = Manifest.load(build).data
    assert data["status"] == "failed" and data["failed_stage"] == "quantize" and "traceback" not in data
    assert data["stages"]["quantize"]["error"] == "terminated by SIGTERM"


def _sleep_when_ready(ready) -> None:
    ready.set()
    time.sleep(30)


def test_a_forked_child_still_dies_of_sigterm():
    # DataLoader workers are forked from the CLI's process and inherit its handler: a SIGTERM there must end them as before
    fork = multiprocessing.get_context("fork")
    ready = fork.Event()
    with sigterm_as_interrupt():
        child = fork.Process(target=_sleep_when_ready, args=(ready,))
        child.start()
        assert ready.wait(30)  # a signal that arrives while the fork is still setting up is dropped
        os.kill(child.pid, signal.SIGTERM)
        child.join(30)
    assert child.exitcode == -signal.SIGTERM
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the CLI's handler does not outlive its command


def test_quantize_scratch_is_beside_the_output_and_a_killed_runs_is_removed(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True).stdout.strip()
    left = tmp_path / f".{SCRATCH}.partial-abc123xy-{dead}"
    left.mkdir()
    (left / "int8-k0.onnx").write_bytes(b"a trial model")
    with scratch_dir(tmp_path / "model.int8.qdq.onnx") as scratch:
        assert scratch.parent == tmp_path and scratch.name.startswith(f".{SCRATCH}.partial-") and scratch.name.endswith(f"-{os.getpid()}")
        assert not left.exists()
    assert not scratch.exists()


def test_ort_quantization_and_sensitivity_write_their_temp_files_in_the_build_folder(tmp_path, monkeypatch):
    weight = np.random.default_rng(0).standard_normal((4, 3, 3, 3)).astype(np.float32)
    graph = helper.make_graph([helper.make_node("Conv", ["input", "w"], ["output"], name="conv", pads=[1, 1, 1, 1])], "g",
                              [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 8, 8])],
                              [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 4, 8, 8])],
                              [helper.make_tensor("w", TensorProto.FLOAT, weight.shape, weight.flatten())])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, tmp_path / "float.onnx")
    seen, made = [], []
    system_tmp = tmp_path / "system-tmp"
    system_tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(system_tmp))
    real_mkdtemp = tempfile.mkdtemp  # what every TemporaryDirectory, onnxruntime's own included, goes through
    monkeypatch.setattr(tempfile, "mkdtemp", lambda *a, **k: made.append(Path(real_mkdtemp(*a, **k))) or str(made[-1]))
    real_prepare, real_modify = ort_static.prepare, dbg.modify_model_output_intermediate_tensors
    monkeypatch.setattr(ort_static, "prepare", lambda src, out: seen.append(Path(out).parent.parent) or real_prepare(src, out))
    monkeypatch.setattr(dbg, "modify_model_output_intermediate_tensors", lambda src, out, *a, **k: seen.append(Path(out).parent.parent) or real_modify(src, out, *a, **k))
    batch = np.random.default_rng(0).standard_normal((4, 3, 8, 8)).astype(np.float32)
    quantize_ort_static(tmp_path / "float.onnx", tmp_path / "out" / "qdq.onnx", batch, QuantizeConfig(op_types=("Conv",)))
    layer_sensitivity(tmp_path / "float.onnx", tmp_path / "out" / "qdq.onnx", batch, ("Conv",))
    assert seen == [tmp_path / "out"] * 3
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["qdq.onnx"]
    ort_own = [p for p in made if p.name.startswith(("ort.quant.", "pre.quant."))]
    assert ort_own and all(p.parent.parent == tmp_path / "out" for p in ort_own)  # inside a scratch folder the sweep reaches
    assert list(system_tmp.iterdir()) == [] and tempfile.tempdir == str(system_tmp)
