"""The efficiency factor: the share of the roofline a runtime reaches, learned from measured runs.

efficiency = roofline_ms / measured_p50_ms (so the estimate is roofline_ms / efficiency). It is
learned per backend/precision where measurements exist, else as one global figure (geometric
means, since these are ratios). Measurements of the same target beat those of another device;
with none at all, a stated prior is used and the row says so.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from ...errors import EdgedistillError

# Used only when no measured run is available; a typical share for batch-1 inference of small
# models (launch and framework overhead dominate). Rows using it say "prior, not learned".
PRIOR_EFFICIENCY = 0.25


@dataclass(frozen=True)
class Sample:
    target: str
    backend: str
    precision: str
    efficiency: float
    origin: str  # where it was measured: "this run" or a file path


def samples_of(doc: dict, origin: str) -> list[Sample]:
    """Samples from a bench document's measured rows that carry a roofline estimate."""
    target = (doc.get("target") or {}).get("name", "")
    out = []
    for row in doc.get("artifacts") or []:
        p50 = (row.get("latency_ms") or {}).get("p50")
        roof = row.get("roofline_ms")
        if row.get("status") == "measured" and isinstance(p50, (int, float)) and p50 > 0 and isinstance(roof, (int, float)) and roof > 0:
            out.append(Sample(target, row.get("backend", ""), row.get("precision", ""), roof / p50, origin))
    return out


def load_samples(paths) -> list[Sample]:
    samples = []
    for raw in paths:
        path = Path(raw)
        path = path / "bench" / "bench.json" if path.is_dir() else path
        try:
            doc = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise EdgedistillError(f"bench.efficiency_from: cannot read {path} ({type(exc).__name__})", "pass measured bench.json files or build folders; bench flags are kept in the build, so on another machine clear it with --set bench.efficiency_from=[]") from None
        found = samples_of(doc, str(path))
        if not found:
            raise EdgedistillError(f"bench.efficiency_from: {path} has no measured row with roofline_ms",
                                   "pass a bench.json written by this version of `edgedistill bench` on a machine that measured")
        samples += found
    return samples


def _geomean(values: list[float]) -> float:
    return math.exp(sum(math.log(v) for v in values) / len(values))


def fit(samples: list[Sample]) -> dict:
    """{"global", "by_key": {"backend/precision": value}, "samples"} for bench.json."""
    if not samples:
        return {"global": None, "by_key": {}, "samples": 0}
    keys: dict[str, list[float]] = {}
    for s in samples:
        keys.setdefault(f"{s.backend}/{s.precision}", []).append(s.efficiency)
    return {"global": round(_geomean([s.efficiency for s in samples]), 4),
            "by_key": {k: round(_geomean(v), 4) for k, v in sorted(keys.items())}, "samples": len(samples)}


def choose(samples: list[Sample], target: str, backend: str, precision: str) -> tuple[float, str]:
    """(efficiency, where it came from), best evidence first."""
    same = [s for s in samples if s.target == target]
    for pool, where in ((same, f"measured on {target}"), (samples, "measured on other devices")):
        exact = [s.efficiency for s in pool if s.backend == backend and s.precision == precision]
        if exact:
            return _geomean(exact), f"learned from {len(exact)} {backend}/{precision} run(s) {where}"
        if pool and pool is same:
            return _geomean([s.efficiency for s in pool]), f"learned from {len(pool)} run(s) {where} (all backends/precisions)"
    if samples:
        targets = ", ".join(sorted({s.target for s in samples}))
        return _geomean([s.efficiency for s in samples]), f"learned on another device ({targets}), transferred"
    return PRIOR_EFFICIENCY, "prior, not learned (set bench.efficiency_from to a measured bench.json)"
