"""Peak compute and memory bandwidth of a target: published figures from its profile, or derived for this CPU.

The CPU derivation is cores x clock x FLOPs per cycle from the ISA flags (two FMA pipes of the
widest vector unit). It is an upper bound, like a data sheet's; the learned efficiency factor
turns it into a latency. Zen 4 runs AVX-512 on 256-bit pipes, so AMD parts with AVX-512 get
the AVX2 rate. Bandwidth is not published for a VM, so it is measured (a large numpy copy).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class Peaks:
    tflops_fp32: float | None
    tflops_fp16: float | None
    tops_int8: float | None
    bandwidth_gbs: float | None
    source: str

    def compute(self, precision: str) -> float | None:
        """Peak ops/s for a precision, falling back to the next wider one the device has."""
        order = {"int8": (self.tops_int8, self.tflops_fp16, self.tflops_fp32), "fp16": (self.tflops_fp16, self.tflops_fp32),
                 "fp32": (self.tflops_fp32,)}.get(precision, (self.tflops_fp32,))
        value = next((v for v in order if v), None)
        return value * 1e12 if value else None

    def as_dict(self) -> dict:
        return asdict(self)


def from_target(target) -> Peaks | None:
    values = (target.peak_tflops_fp32, target.peak_tflops_fp16, target.peak_tops_int8)
    if not any(values):
        return None
    return Peaks(*values, target.bandwidth_gbs, source=f"published figures in target profile {target.name}")


def fp32_flops_per_cycle(isa: list[str], vendor: str = "") -> int:
    """Per core, two FMA pipes (2 FLOPs per lane each)."""
    if "avx512f" in isa and "amd" not in vendor.lower():
        return 64
    if "avx2" in isa or "fma" in isa or "avx512f" in isa:
        return 32
    if "avx" in isa:
        return 16
    return 16 if "asimd" in isa else 8


def int8_speedup(isa: list[str]) -> float:
    """int8 ops per fp32 FLOP: VNNI does 4 int8 multiply-adds per 32-bit lane; without it, about 2."""
    if "amx_int8" in isa:
        return 16.0
    if "avx512_vnni" in isa or "avx_vnni" in isa or "asimddp" in isa:
        return 4.0
    return 2.0


def _clock_ghz() -> float | None:
    max_freq = Path("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq")
    try:
        if max_freq.is_file():
            return int(max_freq.read_text()) / 1e6
        mhz = [float(line.split(":")[1]) for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("cpu MHz")]
        return max(mhz) / 1000 if mhz else None
    except (OSError, ValueError):
        return None


def measure_bandwidth_gbs(mb: int = 128, repeats: int = 3) -> float:
    """Copy bandwidth (read + write bytes / best time) of one large array, as a STREAM-copy stand-in."""
    src = np.ones(mb * 2**20 // 8)
    dst = np.empty_like(src)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        np.copyto(dst, src)
        best = min(best, time.perf_counter() - start)
    return round(2 * src.nbytes / best / 1e9, 1)


def host_cpu(host: dict, cores: int, vendor: str = "", bandwidth_gbs: float | None = None) -> Peaks | None:
    """Peaks of this host's CPU for `cores` cores (the threads the runtime uses)."""
    ghz = host.get("cpu_ghz") or _clock_ghz()
    if not ghz:
        return None
    isa = list(host.get("isa") or [])
    fp32 = cores * ghz * fp32_flops_per_cycle(isa, vendor or host.get("cpu_vendor", "")) / 1e3
    fp16 = fp32 * 2 if "avx512_fp16" in isa else fp32
    bandwidth = bandwidth_gbs if bandwidth_gbs is not None else measure_bandwidth_gbs()
    return Peaks(round(fp32, 4), round(fp16, 4), round(fp32 * int8_speedup(isa), 4), bandwidth,
                 source=f"derived: {cores} cores x {ghz:.2f} GHz x ISA FLOPs/cycle; copy bandwidth measured")
