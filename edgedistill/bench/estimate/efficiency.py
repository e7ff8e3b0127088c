"""The efficiency factor: the share of the roofline a runtime reaches, learned from measured runs.

efficiency = roofline_ms / measured_p50_ms (so the estimate is roofline_ms / efficiency). It is
learned per backend/precision where measurements exist, else as one global figure (geometric
means, since these are ratios). Measurements of the same target beat those of another device of
the same family (capped at 1); another family's are not used; with none at all, a stated prior is
used and the row says so.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from ...device_names import device_family
from ...errors import EdgedistillError

# Used only when no measured run is available; a typical share for batch-1 inference of small
# models (launch and framework overhead dominate). Rows using it say "prior, not learned".
PRIOR_EFFICIENCY = 0.25
# What a bench.efficiency_from row may teach. Above 1 a run beat its roofline (this CPU's nominal-clock peak
# is low by its turbo, ~1.3); far outside this range a file's figures are corrupt, not a device's speed.
EFFICIENCY_RANGE = (1e-6, 10.0)
# A transferred efficiency is capped at this: above 1 says the other device's peak was underestimated,
# nothing about this target's published peak, and would put the estimate below its roofline.
TRANSFER_CAP = 1.0


@dataclass(frozen=True)
class Sample:
    target: str
    backend: str
    precision: str
    efficiency: float
    origin: str  # where it was measured: "this run" or a file path
    device: str = ""  # the target's device (GPU, CPU, NPU, DLA): runs transfer only within its family


def _positive(value) -> bool:
    """A finite number above 0; JSON's true is no latency and Infinity none either."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0


def samples_of(doc: dict, origin: str, strict: bool = False) -> list[Sample]:
    """Samples from a bench document's measured rows that carry a roofline estimate. `strict` (a file from
    bench.efficiency_from) refuses a row whose p50 or roofline_ms is not a positive finite number, or whose
    efficiency is outside EFFICIENCY_RANGE, instead of skipping it (p50=Infinity crashed bench, roofline_ms=1e-300 ruled every estimate)."""
    target, device = ((doc.get("target") or {}).get(k) or "" for k in ("name", "device"))
    out = []
    for row in doc.get("artifacts") or []:
        if not isinstance(row, dict) or row.get("status") != "measured":
            continue
        p50 = (row.get("latency_ms") or {}).get("p50")
        roof = row.get("roofline_ms")
        if roof is None and strict:  # measured where the profile gave no peaks: nothing to learn, not an error
            continue
        if not (_positive(p50) and _positive(roof)) or not EFFICIENCY_RANGE[0] <= roof / p50 <= EFFICIENCY_RANGE[1]:
            if strict:
                raise EdgedistillError(f"bench.efficiency_from: {origin} row {row.get('name')!r} has latency_ms.p50={json.dumps(p50)} and "
                                       f"roofline_ms={json.dumps(roof)}: its efficiency (roofline_ms / p50) must be a finite number from "
                                       f"{EFFICIENCY_RANGE[0]:g} to {EFFICIENCY_RANGE[1]:g}",
                                       "pass a bench.json as `edgedistill bench` wrote it, or leave that file out of bench.efficiency_from")
            continue
        out.append(Sample(target, row.get("backend", ""), row.get("precision", ""), roof / p50, origin, row.get("device") or device))
    return out


def bench_json(raw) -> Path:
    """An efficiency_from entry -> the bench.json it names: itself, or a build folder's bench/bench.json."""
    path = Path(raw)
    return path / "bench" / "bench.json" if path.is_dir() else path


def load_samples(paths) -> list[Sample]:
    samples = []
    for raw in paths:
        path = bench_json(raw)
        try:
            doc = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise EdgedistillError(f"bench.efficiency_from: cannot read {path} ({type(exc).__name__})", "pass measured bench.json files or build folders; bench flags are kept in the build, so on another machine clear it with --set bench.efficiency_from=[]") from None
        if not isinstance(doc, dict):
            raise EdgedistillError(f"bench.efficiency_from: {path} is JSON but not a bench document (an object with artifacts)",
                                   "pass a bench.json written by `edgedistill bench`, or a build folder")
        found = samples_of(doc, str(path), strict=True)
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


def _transferred(efficiency: float, source: str) -> tuple[float, str]:
    """A figure learned on another target, capped at TRANSFER_CAP; the source says when it was."""
    if efficiency <= TRANSFER_CAP:
        return efficiency, source
    return TRANSFER_CAP, f"{source}, capped at {TRANSFER_CAP:g} from {efficiency:.3g} (another device beating its own roofline says nothing of this one's)"


def choose(samples: list[Sample], target: str, backend: str, precision: str, device: str = "") -> tuple[float, str]:
    """(efficiency, where it came from), best evidence first: runs on this target (same backend/precision, then
    all); then runs on other targets whose device is of the same family (a CPU's launch and framework overhead
    says nothing about a GPU's), transferred and capped at TRANSFER_CAP; then the prior."""
    same = [s for s in samples if s.target == target]
    if same:
        exact = [s.efficiency for s in same if s.backend == backend and s.precision == precision]
        if exact:
            return _geomean(exact), f"learned from {len(exact)} {backend}/{precision} run(s) measured on {target}"
        return _geomean([s.efficiency for s in same]), f"learned from {len(same)} run(s) measured on {target} (all backends/precisions)"
    family = device_family(device)
    kin = [s for s in samples if device_family(s.device) == family]
    exact = [s.efficiency for s in kin if s.backend == backend and s.precision == precision]
    if exact:
        return _transferred(_geomean(exact), f"learned from {len(exact)} {backend}/{precision} run(s) measured on other {family or 'same-kind'} devices")
    if kin:
        targets = ", ".join(sorted({s.target for s in kin}))
        return _transferred(_geomean([s.efficiency for s in kin]), f"learned on another {family or 'same-kind'} device ({targets}), transferred")
    if samples:
        others = ", ".join(sorted({f"{s.target} ({device_family(s.device) or 'device not recorded'})" for s in samples}))
        return PRIOR_EFFICIENCY, (f"prior, not learned: bench.efficiency_from has runs on {others} only, not on a {family or 'device like this one'}, "
                                  "whose efficiency they do not predict")
    return PRIOR_EFFICIENCY, "prior, not learned (set bench.efficiency_from to a measured bench.json)"
