"""Throughput sweep, peak memory and size on disk, on real ONNX Runtime runs."""

from __future__ import annotations

import os

import numpy as np
import pytest

from edgedistill.backends import get_backend
from edgedistill.bench.measure import size_on_disk_mb
from edgedistill.bench.memory import PeakMemory, gpu_memory_mb
from edgedistill.bench.throughput import batch_of, batch_sizes, sweep
from edgedistill.errors import EdgedistillError

from .test_bench_fixtures import embedder

TIMING = {"warmup": 1, "iterations": 5, "time_budget_s": None, "cpus": None}


def test_sweep_measures_each_batch_and_reports_static_batch_failures(tmp_path):
    inputs = np.random.default_rng(0).standard_normal((3, 3, 16, 16)).astype(np.float32)
    with get_backend("onnxruntime").runner(embedder(tmp_path / "dyn.onnx"), threads=1) as runner:
        result = sweep(runner, inputs, [1, 4], **TIMING)
    assert [r["batch"] for r in result] == [1, 4] and all(r["status"] == "measured" for r in result)
    for r in result:
        assert r["latency_ms"]["iterations"] == 5
        assert r["throughput_ips"] == round(r["batch"] * 1000 / r["latency_ms"]["mean"], 2)
    with get_backend("onnxruntime").runner(embedder(tmp_path / "static.onnx", batch=1), threads=1) as runner:
        result = sweep(runner, inputs, [1, 4], **TIMING)
    assert [r["status"] for r in result] == ["measured", "failed"]
    assert result[1]["notes"] and result[1]["latency_ms"] is None


def test_batch_helpers():
    x = np.arange(3)[:, None]
    assert batch_of(x, 7)[:, 0].tolist() == [0, 1, 2, 0, 1, 2, 0]
    assert batch_sizes((), 1, 1, 8) == [1, 8]
    assert batch_sizes((4, 2, 2), 1, 1, 8) == [2, 4]
    assert batch_sizes(("1,4, 8",), 1, 1, 8) == [1, 4, 8]  # as --set bench.batch_sizes=1,4,8 gives it
    with pytest.raises(EdgedistillError):
        batch_sizes(("a",), 1, 1, 8)


def test_peak_memory_sees_an_allocation_freed_before_exit():
    with PeakMemory() as mem:
        block = np.ones(64 * 2**20 // 8)  # 64 MiB, touched
        del block
        mem.sample_gpu()
    report = mem.as_dict()
    assert report["method"] in ("vmhwm", "sampled")
    assert report["peak_rss_delta_mb"] >= 50  # the peak, not the (lower) RSS at exit
    assert report["peak_rss_mb"] >= report["rss_before_mb"]
    if gpu_memory_mb() is None:  # no NVIDIA GPU here
        assert report["gpu_mb"] is None


def test_size_on_disk_counts_every_file_of_a_folder(tmp_path):
    (tmp_path / "ir").mkdir()
    (tmp_path / "ir" / "model.xml").write_bytes(b"x" * 1000)
    (tmp_path / "ir" / "model.bin").write_bytes(b"x" * 2_000_000)
    assert size_on_disk_mb(tmp_path / "ir") == 2.001


def test_the_memory_column_is_the_model_at_its_deployment_batch_not_the_measurement_around_it(tmp_path, monkeypatch):
    """The probe (sklearn) and the batch sweep ran inside the window, so the first artifact carried
    their memory and the column depended on bench order."""
    from edgedistill.artifacts import Artifact
    from edgedistill.bench import measure as measure_mod

    def hungry(*args, **kwargs):
        block = np.ones(128 * 2**20 // 8)  # 128 MiB, touched, as a first sklearn import or a big batch would
        del block
        return {"knn_top1": 1.0}

    monkeypatch.setattr(measure_mod, "probe_accuracy", hungry)
    model = embedder(tmp_path / "m.onnx")
    artifact = Artifact.record(tmp_path, model, kind="onnx", name="onnx-fp32", precision="fp32", backend="onnxruntime")
    inputs = np.random.default_rng(0).standard_normal((4, 3, 16, 16)).astype(np.float32)
    plan = measure_mod.Plan(inputs=inputs, reference={}, teacher_logits=None, warmup=1, iterations=3, time_budget_s=None,
                            batch=1, batch_sizes=[1], threads=1, labelled=(inputs, np.array([0, 1, 0, 1])))
    monkeypatch.setattr(measure_mod, "fidelity", lambda *a: {})
    row = measure_mod.measure(artifact, tmp_path, "CPU", plan, timed=True)
    assert row["status"] == "measured", row.get("notes")
    assert row["memory"]["peak_rss_delta_mb"] < 64 and row["memory"]["batch"] == 1


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
def test_pinned_cpus_hold_for_every_inference_of_the_runner(tmp_path, monkeypatch, backend):
    """OpenVINO's CPU plugin restores the affinity it saw at compile time during each inference:
    pinning only around the timed loop left its inferences on every CPU while the report said pinned."""
    import os

    from edgedistill.artifacts import Artifact
    from edgedistill.bench import measure as measure_mod

    before = os.sched_getaffinity(0)
    cpu = max(before)
    runner_class = type(get_backend(backend).runner(embedder(tmp_path / "probe.onnx"), threads=1))
    seen = []
    original = runner_class._infer_impl

    def spying(self, feeds):
        out = original(self, feeds)
        seen.append(frozenset(os.sched_getaffinity(0)))  # this thread's CPUs, as the runtime left them
        return out

    monkeypatch.setattr(runner_class, "_infer_impl", spying)
    monkeypatch.setattr(measure_mod, "fidelity", lambda *a: {})
    model = embedder(tmp_path / "m.onnx")
    artifact = Artifact.record(tmp_path, model, kind="onnx", name="onnx-fp32", precision="fp32", backend=backend)
    inputs = np.random.default_rng(0).standard_normal((2, 3, 16, 16)).astype(np.float32)
    plan = measure_mod.Plan(inputs=inputs, reference={}, teacher_logits=None, warmup=2, iterations=10, time_budget_s=None,
                            batch=1, batch_sizes=[1], threads=1, cpus={cpu})
    row = measure_mod.measure(artifact, tmp_path, "CPU", plan, timed=True)
    assert row["status"] == "measured", row.get("notes")
    assert row["runtime_settings"]["pinned_cpus"] == [cpu] and len(seen) >= 12
    assert set(seen) == {frozenset({cpu})}
    assert os.sched_getaffinity(0) == before  # and put back afterwards


def _fake_nvidia_smi(folder, apps: str, used: str, monkeypatch):
    """An nvidia-smi on PATH that answers the two queries bench makes, the second from a file."""
    (folder / "used").write_text(used)
    script = folder / "nvidia-smi"
    script.write_text(f"""#!/bin/sh
case "$1" in
  --query-compute-apps=*) printf '{apps}' ;;
  --query-gpu=memory.used) cat {folder / 'used'} ;;
  *) exit 9 ;;
esac
""")
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{folder}:{os.environ['PATH']}")


def test_gpu_memory_is_this_process_figure_or_the_devices_rise_where_nvidia_smi_cannot_see_it(tmp_path, monkeypatch):
    _fake_nvidia_smi(tmp_path, f"{os.getpid()}, 812\\n{os.getpid() + 1}, 4000\\n", "5000\n100\n", monkeypatch)
    with PeakMemory() as mem:
        mem.sample_gpu()
    assert gpu_memory_mb() == 812 and (mem.as_dict()["gpu_mb"], mem.as_dict()["gpu_method"]) == (812, "process")

    # in a container nvidia-smi lists the host's PIDs: never this process, whose memory is not 0 MiB
    _fake_nvidia_smi(tmp_path, "4242, 4000\\n", "5000\n100\n", monkeypatch)
    assert gpu_memory_mb() is None
    with PeakMemory() as mem:
        (tmp_path / "used").write_text("5000\n400\n")  # the runner loaded 300 MiB on the second GPU
        mem.sample_gpu()
    assert (mem.as_dict()["gpu_mb"], mem.as_dict()["gpu_method"]) == (300, "device-delta")


def test_only_rows_that_may_hold_gpu_memory_sample_it(tmp_path, monkeypatch):
    """A CPU row on a GPU server would report other jobs' allocations as its own (device-delta)."""
    from edgedistill.artifacts import Artifact
    from edgedistill.bench import measure as measure_mod
    from edgedistill.bench.measure import uses_a_gpu

    (tmp_path / "smi").mkdir()
    _fake_nvidia_smi(tmp_path / "smi", "4242, 1500\\n", "1500\n", monkeypatch)  # another job's 1500 MiB on the GPU
    monkeypatch.setattr(measure_mod, "fidelity", lambda *a: {})
    original = measure_mod.PeakMemory.sample_gpu

    def another_job_allocates(self):
        (tmp_path / "smi" / "used").write_text("3000\n")
        original(self)

    monkeypatch.setattr(measure_mod.PeakMemory, "sample_gpu", another_job_allocates)
    artifact = Artifact.record(tmp_path, embedder(tmp_path / "m.onnx"), kind="onnx", name="onnx-fp32", precision="fp32", backend="onnxruntime")
    inputs = np.random.default_rng(0).standard_normal((2, 3, 16, 16)).astype(np.float32)
    plan = measure_mod.Plan(inputs=inputs, reference={}, teacher_logits=None, warmup=1, iterations=2, time_budget_s=None,
                            batch=1, batch_sizes=[1], threads=1)
    assert measure_mod.measure(artifact, tmp_path, "CPU", plan, timed=False)["memory"]["gpu_mb"] is None

    assert not uses_a_gpu("onnxruntime", "CPU") and not uses_a_gpu("openvino", "NPU")
    assert uses_a_gpu("tensorrt", "GPU") and uses_a_gpu("onnxruntime", "GPU") and uses_a_gpu("openvino", "GPU.1")
    assert uses_a_gpu("openvino", "AUTO:GPU,CPU") and uses_a_gpu("tensorrt", "DLA")


def test_openvino_throughput_is_timed_async_under_the_throughput_hint_and_onnxruntime_says_sync(tmp_path):
    """benchmark_app -hint throughput runs OPTIMAL_NUMBER_OF_INFER_REQUESTS requests at once on a THROUGHPUT
    compile; one synchronous request (batch x 1000 / mean) understates a many-core CPU severalfold."""
    from edgedistill.backends.openvino_backend import convert_to_ir
    from edgedistill.bench.latency import measure_latency

    inputs = np.random.default_rng(0).standard_normal((3, 3, 16, 16)).astype(np.float32)
    xml = convert_to_ir(embedder(tmp_path / "dyn.onnx"), tmp_path / "ir" / "model.xml")
    with get_backend("openvino").runner(xml, threads=1) as runner:
        main = measure_latency(runner, {"input": batch_of(inputs, 1)}, warmup=1, iterations=5)
        result = sweep(runner, inputs, [1, 4], measured={1: main}, **TIMING)
        hint = runner.runtime_settings()["PERFORMANCE_HINT"]
    assert hint == "LATENCY"  # the latency compile is untouched; throughput has its own
    for entry in result:
        assert entry["status"] == "measured" and entry["mode"] == "async" and entry["performance_hint"] == "THROUGHPUT"
        assert entry["nireq"] >= 1 and entry["streams"] >= 1 and entry["requests"] == 5 and entry["stopped_by"] == "iterations"
        # `seconds` is rounded to the microsecond, which at this tiny model's pace moves the ratio by more than 1e-3
        assert entry["throughput_ips"] == pytest.approx(5 * entry["batch"] / entry["seconds"], rel=1e-3 + 1e-6 / entry["seconds"])
    with get_backend("openvino").runner(xml, threads=1) as runner:
        budget = sweep(runner, inputs, [2], warmup=1, iterations=10**6, time_budget_s=0.05, cpus=None)
    assert budget[0]["stopped_by"] == "time_budget" and budget[0]["requests"] >= 5
    with get_backend("onnxruntime").runner(tmp_path / "dyn.onnx", threads=1) as runner:
        assert {t["mode"] for t in sweep(runner, inputs, [1, 4], **TIMING)} == {"sync"}


def test_openvino_async_requests_each_run_the_batch_they_were_given(tmp_path):
    """The batch is set on every request once, as benchmark_app does, and each request's output is that batch's."""
    from edgedistill.backends.openvino_backend import convert_to_ir
    from edgedistill.bench.throughput import timed_async

    inputs = np.random.default_rng(1).standard_normal((2, 3, 16, 16)).astype(np.float32)
    xml = convert_to_ir(embedder(tmp_path / "dyn.onnx"), tmp_path / "ir" / "model.xml")
    with get_backend("openvino").runner(xml, threads=1) as runner:
        expected = runner.infer({"input": inputs})
        with runner.throughput_queue() as queue:
            done, _, _ = timed_async(queue, {"input": inputs}, warmup=1, iterations=3 * queue.nireq)
            assert done == 3 * queue.nireq
            for request in queue.queue:
                for name, value in expected.items():
                    np.testing.assert_allclose(request.get_tensor(name).data, value, rtol=1e-5, atol=1e-5)
            timed_async(queue, {"input": inputs[:1]}, warmup=1, iterations=queue.nireq)  # a new batch replaces the last
            for request in queue.queue:
                assert request.get_tensor("input").data.shape[0] == 1
                np.testing.assert_allclose(request.get_tensor("embedding").data, expected["embedding"][:1], rtol=1e-5, atol=1e-5)


@pytest.mark.timeout(60, method="thread")  # without a fresh queue the batch after a rejected one waits forever
def test_an_async_batch_a_static_model_rejects_fails_alone(tmp_path):
    from edgedistill.backends.openvino_backend import convert_to_ir

    inputs = np.random.default_rng(0).standard_normal((3, 3, 16, 16)).astype(np.float32)
    xml = convert_to_ir(embedder(tmp_path / "static.onnx", batch=1), tmp_path / "ir" / "model.xml")
    with get_backend("openvino").runner(xml, threads=1) as runner:
        result = sweep(runner, inputs, [4, 1], **TIMING)
    assert [(t["batch"], t["status"]) for t in result] == [(4, "failed"), (1, "measured")]
    assert result[1]["mode"] == "async" and result[0]["notes"]
