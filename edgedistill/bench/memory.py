"""Peak memory around a runner's activation and inference: host RSS, and GPU memory where a GPU is.

On Linux the kernel keeps the process's RSS high-water mark (VmHWM); writing "5" to
/proc/self/clear_refs resets it, so the peak is exact and costs nothing while timing.
Elsewhere a sampling thread polls RSS every few milliseconds (a lower bound of the peak).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
from pathlib import Path

_STATUS = Path("/proc/self/status")


def _status_kb(key: str) -> int | None:
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def _reset_hwm() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return _status_kb("VmHWM") is not None
    except OSError:
        return False


def _rss_bytes() -> int:
    import psutil

    return psutil.Process().memory_info().rss


def _nvidia_smi(*query: str) -> list[list[str]] | None:
    """nvidia-smi's CSV rows for a query; None without an NVIDIA GPU (or when it fails)."""
    if shutil.which("nvidia-smi") is None:
        return None
    try:
        done = subprocess.run(["nvidia-smi", *query, "--format=csv,noheader,nounits"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    if done.returncode != 0:
        return None
    return [[cell.strip() for cell in line.split(",")] for line in done.stdout.splitlines() if line.strip()]


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:  # "[N/A]" on some devices
        return None


def gpu_memory_mb(pid: int | None = None) -> float | None:
    """GPU memory this process holds (all GPUs), from nvidia-smi; None without an NVIDIA GPU, or where
    nvidia-smi does not list this process (a container's PIDs are not the host's it reports)."""
    rows = _nvidia_smi("--query-compute-apps=pid,used_memory")
    if rows is None:
        return None
    pid = str(pid or os.getpid())
    used = [_number(row[1]) for row in rows if len(row) == 2 and row[0] == pid]
    used = [mb for mb in used if mb is not None]
    return sum(used) if used else None


def gpu_used_mb() -> float | None:
    """Memory in use on all GPUs, by every process; None without an NVIDIA GPU."""
    rows = _nvidia_smi("--query-gpu=memory.used")
    if rows is None:
        return None
    used = [_number(row[0]) for row in rows if row]
    return None if not used or None in used else sum(used)


class PeakMemory:
    """`with PeakMemory() as mem: ...` then `mem.as_dict()`; call `mem.sample_gpu()` while the model is loaded."""

    def __init__(self, poll_s: float = 0.002):
        self.poll_s = poll_s
        self.method = ""
        self.before = self.peak = 0
        self.gpu_mb: float | None = None
        self.gpu_method = ""
        self._gpu_before: float | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> "PeakMemory":
        self._gpu_before = gpu_used_mb()
        self.before = _rss_bytes()
        if _reset_hwm():
            self.method = "vmhwm"
        else:
            self.method = "sampled"
            self.peak = self.before
            self._thread = threading.Thread(target=self._poll, daemon=True)
            self._thread.start()
        return self

    def _poll(self) -> None:
        while not self._stop.wait(self.poll_s):
            self.peak = max(self.peak, _rss_bytes())

    def sample_gpu(self) -> None:
        used = gpu_memory_mb()
        if used is not None:
            self.gpu_method = "process"
        elif self._gpu_before is not None and (now := gpu_used_mb()) is not None:
            # nvidia-smi does not list this process (inside a container): the GPUs' rise since the window
            # opened, which other processes' allocations in the meantime would also count
            used, self.gpu_method = max(now - self._gpu_before, 0.0), "device-delta"
        if used is not None:
            self.gpu_mb = max(self.gpu_mb or 0.0, used)

    def __exit__(self, *exc) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self.peak = max(self.peak, _rss_bytes())
        else:
            self.peak = max((_status_kb("VmHWM") or 0) * 1024, _rss_bytes())

    def as_dict(self) -> dict:
        mb = 1 / 2**20
        return {"rss_before_mb": round(self.before * mb, 1), "peak_rss_mb": round(self.peak * mb, 1),
                "peak_rss_delta_mb": round(max(self.peak - self.before, 0) * mb, 1), "method": self.method,
                "gpu_mb": None if self.gpu_mb is None else round(self.gpu_mb, 1),
                **({"gpu_method": self.gpu_method} if self.gpu_mb is not None else {})}
