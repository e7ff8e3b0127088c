"""A description of the machine a measurement was taken on."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
from pathlib import Path

from ..versions import tool_versions

ISA_FLAGS = ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "avx512_bf16", "avx512_fp16", "amx_tile", "amx_bf16", "amx_int8", "asimd", "asimddp", "sve")


def _cpuinfo() -> tuple[str, list[str], str, float | None]:
    text = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").is_file() else ""
    model, flags, vendor, mhz = platform.processor() or platform.machine(), set(), "", []
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key in ("model name", "Model") and model in ("", platform.machine()):
            model = value.strip()
        if key in ("flags", "Features"):
            flags.update(value.split())
        if key in ("vendor_id", "CPU implementer") and not vendor:
            vendor = value.strip()
        if key == "cpu MHz":
            mhz.append(float(value))
    return model, [f for f in ISA_FLAGS if f in flags], vendor, max(mhz) / 1000 if mhz else None


def _max_ghz(fallback: float | None) -> float | None:
    """The rated maximum clock where the kernel exposes it (not in most VMs), else /proc/cpuinfo's."""
    path = Path("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq")
    try:
        return int(path.read_text()) / 1e6 if path.is_file() else fallback
    except (OSError, ValueError):
        return fallback


def _gpu() -> str | None:
    if shutil.which("nvidia-smi") is None:
        return None
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader"], capture_output=True, text=True, timeout=10)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def describe_host() -> dict:
    import psutil

    model, isa, vendor, ghz = _cpuinfo()
    return {
        "hostname": platform.node(),
        "os": f"{platform.system()}-{platform.release()}",
        "arch": platform.machine(),
        "cpu_model": model,
        "cpu_vendor": vendor,
        "cpu_ghz": None if _max_ghz(ghz) is None else round(_max_ghz(ghz), 3),
        "cpu_affinity": sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "cores_logical": os.cpu_count(),
        "cores_physical": psutil.cpu_count(logical=False),
        "isa": isa,
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "gpu": _gpu(),
        "versions": tool_versions(),
    }


# What decides a latency, for bench's stage key: a build folder restored from a CI cache onto another kind of
# runner, or copied to the device, is measured again rather than gated on the other machine's figures. Not the
# hostname (each Docker container gets a new one: every containerised build would bench again on the same
# machine), the current clock (cpu_ghz, which /proc/cpuinfo reports as it moves) nor the memory size.
MEASURING_FIELDS = ("os", "arch", "cpu_model", "cpu_vendor", "cpu_affinity", "cores_logical", "cores_physical", "isa", "gpu", "versions")


def measuring_host() -> dict:
    host = describe_host()
    return {key: host[key] for key in MEASURING_FIELDS}
