"""The estimator for this CPU, learned from one model, predicts another model's measured latency.

ViT-Tiny (0.58 GFLOP) teaches the efficiency factor; ViT-Small (2.2 GFLOP, 2x wider) is predicted.
Bound: the estimate within a factor of 3 of the measurement, either way. benchmarks/estimate_accuracy.py
measured +5.3% / +4.4% for this pair (docs/benchmarking.md); the margin covers the load other
processes put on a shared 2-core CI machine during the few seconds of timing, while a FLOP or byte
count wrong by a factor of 3 or more, too high or too low, fails.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

from edgedistill.bench.estimate.check import cross_check
from edgedistill.bench.estimate.peaks import host_cpu
from edgedistill.bench.host import describe_host

SCRIPT = Path(__file__).parents[1] / "benchmarks" / "estimate_accuracy.py"


def _script():
    spec = importlib.util.spec_from_file_location("estimate_accuracy", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_learned_on_vit_tiny_predicts_vit_small(tmp_path):
    script = _script()
    tiny, small = script.export("vit_tiny_112", tmp_path), script.export("vit_small_112", tmp_path)
    threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    peaks = host_cpu(describe_host(), cores=threads)
    result = cross_check(tiny, [small], peaks, threads, rounds=3, iterations=10, warmup=3)
    calibrated, predicted = result["rows"]
    assert calibrated["error_pct"] == 0.0  # the efficiency is fitted on it
    assert predicted["gflop"] > 3 * calibrated["gflop"]
    # A sanity bound, not the accuracy figure (benchmarks/estimate_accuracy.py measures that): on this noisy
    # 2-core VM the error crossed an earlier 60% bound (61.8%) in a clean CI run, while a units or FLOP-count
    # bug is off by far more than a factor of 3. As a ratio, so an under-estimate (never below -100%) counts too.
    assert 1 / 3 < 1 + predicted["error_pct"] / 100 < 3, result
    estimated, measured = script.bench_docs(result)
    from edgedistill.report import merge_reports

    (row,) = merge_reports([estimated, measured])["rows"]
    assert row["status"] == "measured" and row["estimate_error_pct"] == pytest.approx(predicted["error_pct"], abs=0.1)
