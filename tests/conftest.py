"""Shared fixtures: one tiny end-to-end build reused by the pipeline, CLI and export tests."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("EDGEDISTILL_NO_PROGRESS", "1")

# A student small enough that the whole pipeline runs in well under a minute on 2 cores.
TINY_OVERRIDES = (
    "student.name=vit_tiny_patch16_224",
    "student.img_size=64",
    "student.model_args={depth: 2, embed_dim: 64, num_heads: 2}",
    "distill.steps=3",
    "distill.batch_size=8",
    "distill.warmup_steps=1",
    "bench.warmup=1",
    "bench.iterations=5",
    "bench.eval_images=16",
)


@pytest.fixture(autouse=True)
def signal_stack_stays_valid():
    """Each test leaves the thread on a mapped signal stack. A stale one (OpenVINO's plugins do this,
    see edgedistill/backends/signal_stack.py) segfaults a later test at its first signal, far from the cause."""
    yield
    from edgedistill.backends.signal_stack import signal_stack_is_valid

    assert signal_stack_is_valid(), "this test left the thread on an unmapped signal stack"


@pytest.fixture(scope="session")
def tiny_build(tmp_path_factory) -> Path:
    """A complete x86-cpu build folder made through the real CLI entry point."""
    from edgedistill.cli import main

    out = tmp_path_factory.mktemp("tiny") / "build"
    args = ["build", "--target", "x86-cpu", "--out", str(out)]
    for override in TINY_OVERRIDES:
        args += ["--set", override]
    assert main(args) == 0
    return out
