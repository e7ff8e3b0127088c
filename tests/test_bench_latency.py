"""The latency harness measures exactly Runner.infer, after (and never including) the warm-up."""

from __future__ import annotations

import os
import threading
import time

import numpy as np
import pytest

from edgedistill.backends import get_backend
from edgedistill.backends.base import Runner
from edgedistill.bench.affinity import pinned
from edgedistill.list_settings import parse_cpus
from edgedistill.bench.latency import measure_latency, timed_samples
from edgedistill.errors import EdgedistillError

from .test_bench_fixtures import embedder


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class ScriptedRunner(Runner):
    """Each infer advances a fake clock by a scripted duration; the harness's own work costs 1 s."""

    def __init__(self, clock: FakeClock, durations: list[float]):
        super().__init__("scripted")
        self.clock, self.durations, self.calls = clock, list(durations), 0

    def _activate_impl(self):
        pass

    def _infer_impl(self, feeds):
        self.clock.now += self.durations[self.calls]
        self.calls += 1
        return {"embedding": feeds["input"]}

    def _input_names_impl(self):
        return ["input"]

    def last_inference_time(self):
        value = super().last_inference_time()
        self.clock.now += 1.0  # time spent outside infer must never show up in a sample
        return value


@pytest.fixture
def clock(monkeypatch):
    fake = FakeClock()
    monkeypatch.setattr(time, "perf_counter", fake)
    return fake


def test_samples_are_exactly_the_timed_infer_calls(clock):
    warmup, timed = [5.0] * 3, [0.001 * (i + 1) for i in range(7)]
    with ScriptedRunner(clock, warmup + timed) as runner:
        samples = timed_samples(runner, {"input": np.zeros(1)}, warmup=3, iterations=7)
    assert runner.calls == 10
    assert samples == pytest.approx([d * 1000 for d in timed])  # no warm-up call, no harness overhead
    stats = measure_latency(ScriptedRunner(clock, warmup + timed).__enter__(), {"input": np.zeros(1)}, warmup=3, iterations=7)
    assert stats.iterations == 7 and stats.warmup == 3
    assert stats.max == pytest.approx(7.0) and stats.min == pytest.approx(1.0)
    assert stats.p50 == pytest.approx(4.0) and stats.mean == pytest.approx(4.0)
    assert stats.p50 <= stats.p90 <= stats.p99 <= stats.max


def test_time_budget_stops_early_but_keeps_five_runs(clock):
    with ScriptedRunner(clock, [0.5] * 100) as runner:
        # each loop turn costs 0.5 s infer + 1 s outside: a 4 s budget is spent after 3 turns,
        # but at least 5 samples are kept
        samples = timed_samples(runner, {"input": np.zeros(1)}, warmup=2, iterations=50, time_budget_s=4.0)
        assert len(samples) == 5
        samples = timed_samples(runner, {"input": np.zeros(1)}, warmup=0, iterations=50, time_budget_s=10.0)
        assert len(samples) == 7


class Recording:
    """Wraps a real runner's _infer_impl: records its own duration per call; the first calls sleep."""

    def __init__(self, runner: Runner, slow_calls: int, sleep_s: float = 0.2):
        self.inner: list[float] = []
        original = runner._infer_impl

        def wrapped(feeds):
            if len(self.inner) < slow_calls:
                time.sleep(sleep_s)
            start = time.perf_counter()
            out = original(feeds)
            self.inner.append(time.perf_counter() - start)
            return out

        runner._infer_impl = wrapped


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
def test_real_runtime_warmup_excluded_and_samples_match_infer(tmp_path, backend):
    model = embedder(tmp_path / "m.onnx")
    runner = get_backend(backend).runner(model, threads=1)
    feeds = {"input": np.random.default_rng(0).standard_normal((1, 3, 16, 16)).astype(np.float32)}
    with runner:
        rec = Recording(runner, slow_calls=4)  # the 4 warm-up calls each take >= 0.2 s
        started = time.perf_counter()
        samples = timed_samples(runner, feeds, warmup=4, iterations=20)
        wall = time.perf_counter() - started
    assert len(rec.inner) == 24 and len(samples) == 20
    for sample_ms, inner_s in zip(samples, rec.inner[4:]):
        # each sample wraps exactly one inference call: never shorter, and never a warm-up sleep
        assert sample_ms >= inner_s * 1000
        assert sample_ms < inner_s * 1000 + 150
    assert sum(samples) / 1000 < wall


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity") or len(os.sched_getaffinity(0)) < 2, reason="needs Linux and 2 CPUs")
def test_pinning_moves_every_thread_and_restores(clock):
    before = os.sched_getaffinity(0)
    target = {min(before)}
    seen: dict[str, set] = {}
    ready, done = threading.Event(), threading.Event()
    worker_tid: list[int] = []

    def worker():  # stands in for a runtime's thread pool, created before pinning
        worker_tid.append(threading.get_native_id())
        ready.set()
        done.wait(10)

    thread = threading.Thread(target=worker)
    thread.start()
    ready.wait(10)

    class Probe(ScriptedRunner):
        def _infer_impl(self, feeds):
            seen["main"] = os.sched_getaffinity(0)
            seen["worker"] = os.sched_getaffinity(worker_tid[0])
            return super()._infer_impl(feeds)

    try:
        with Probe(clock, [0.001] * 10) as runner:
            timed_samples(runner, {"input": np.zeros(1)}, warmup=1, iterations=3, cpus=target)
        assert seen == {"main": target, "worker": target}
        assert os.sched_getaffinity(0) == before and os.sched_getaffinity(worker_tid[0]) == before
    finally:
        done.set()
        thread.join()


def test_parse_cpus_and_bad_pins():
    assert parse_cpus(("0-2", 5)) == {0, 1, 2, 5}
    assert parse_cpus("1,3") == {1, 3} and parse_cpus(()) == set()
    with pytest.raises(EdgedistillError):
        parse_cpus("a")
    if hasattr(os, "sched_setaffinity"):
        with pytest.raises(EdgedistillError, match="not within"):
            with pinned({max(os.sched_getaffinity(0)) + 1000}):
                pass


def test_stats_record_whether_the_time_budget_or_the_count_stopped_timing(clock):
    """The report says how many samples p50/p90/p99 rest on and why timing stopped (a 0.03 s budget: 5)."""
    feeds = {"input": np.zeros(1)}
    with ScriptedRunner(clock, [0.5] * 100) as runner:
        budget = measure_latency(runner, feeds, warmup=0, iterations=50, time_budget_s=4.0)
        count = measure_latency(runner, feeds, warmup=0, iterations=6, time_budget_s=100.0)
        plain = measure_latency(runner, feeds, warmup=0, iterations=4)
    assert (budget.iterations, budget.stopped_by) == (5, "time_budget")
    assert (count.iterations, count.stopped_by) == (6, "iterations")
    assert (plain.iterations, plain.stopped_by) == (4, "iterations")
    assert budget.as_dict()["stopped_by"] == "time_budget"
