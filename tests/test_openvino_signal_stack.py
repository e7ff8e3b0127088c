"""OpenVINO's CPU plugins, destroyed in the order they were made, leave the thread on an unmapped
signal stack (see edgedistill/backends/signal_stack.py); a signal for a Python handler then
segfaults the process. Run in a child process, since the failure kills it."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
import torch

from edgedistill.export.onnx_export import export_onnx

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="sigaltstack is Linux-only here")

CHILD = textwrap.dedent("""
    import signal, subprocess, sys
    from edgedistill.backends import get_backend
    signal.signal(signal.SIGCHLD, lambda *args: None)  # as a DataLoader with workers does; CPython sets it SA_ONSTACK
    first, second = (get_backend("openvino").runner(sys.argv[1]) for _ in range(2))
    first.activate()
    second.activate()
    first.deactivate()  # first made, first destroyed: the order that leaves a stale stack
    second.deactivate()
    subprocess.run(["true"], check=True)  # its exit sends SIGCHLD
    print("survived")
""")


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory):
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.Flatten()).eval()
    return export_onnx(model, [3, 8, 8], tmp_path_factory.mktemp("ss") / "m.onnx", ["embedding"])


def test_openvino_runners_closed_in_creation_order_leave_signals_deliverable(tiny_onnx):
    out = subprocess.run([sys.executable, "-c", CHILD, str(tiny_onnx)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and out.stdout.strip() == "survived", (out.returncode, out.stderr[-2000:])

