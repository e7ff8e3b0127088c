"""Schema names of the JSON documents the report stage reads and writes (docs/report-schema.md)."""

from __future__ import annotations

import math

from ..errors import EdgedistillError

BENCH = "edgedistill.bench/1"
REPORT = "edgedistill.report/1"
COMPARISON = "edgedistill.comparison/1"


def kind_of(doc: dict, where: str = "document") -> str:
    """'bench', 'report' or 'comparison'; a clear user error for anything else."""
    schema = doc.get("schema") if isinstance(doc, dict) else None
    kinds = {BENCH: "bench", REPORT: "report", COMPARISON: "comparison"}
    if schema not in kinds:
        raise EdgedistillError(
            f"{where} has schema {schema!r}, expected one of {', '.join(kinds)}",
            "pass a bench/bench.json, a report/report.json or a build folder",
        )
    return kinds[schema]


def artifacts_of(doc: dict) -> list[dict]:
    """The artifact records of a bench or report document (an empty list when absent)."""
    arts = doc.get("artifacts") or []
    return [a for a in arts if isinstance(a, dict)]


NON_FINITE = ("nan", "inf", "-inf")  # how report.json writes NaN/inf: strict JSON has neither, and null means "not computed"


def as_number(value) -> float | None:
    """A figure of a bench or report document: a number, NaN/inf as floats or as report.json's words; else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    return float(value) if value in NON_FINITE else None


def p50_of(art: dict) -> float | None:
    """The median latency in ms, or None when there is none (pending, failed, missing, NaN/inf)."""
    value = as_number((art.get("latency_ms") or {}).get("p50"))
    return value if value is not None and math.isfinite(value) else None


# The latency statistics that must be positive and finite (std may be 0); a bench never writes anything
# else, so another value is a hand-edited or corrupt file, and it would pass as the fastest row.
LATENCY_STATS = ("p50", "p90", "p99", "mean", "min", "max")


def check_latencies(doc: dict, where: str) -> None:
    """Refuse a row whose latency is zero, negative, NaN/inf or not a number."""
    for art in artifacts_of(doc):
        stats = art.get("latency_ms")
        for key in LATENCY_STATS if isinstance(stats, dict) else ():
            raw = stats.get(key)
            value = as_number(raw)
            if raw is not None and (value is None or not math.isfinite(value) or value <= 0):
                raise EdgedistillError(f"{where}: row {art.get('name')!r} has latency_ms.{key} {raw!r}, not a positive number of ms",
                                       "re-run `edgedistill bench` for that build, or correct or remove that row")


def fidelity_of(art: dict, key: str) -> float | None:
    """A fidelity figure, None when not computed. NaN/inf come back as they are: callers must fail them."""
    return as_number((art.get("fidelity") or {}).get(key))


def beside_limit(value: float, limit: float, spec: str = ".4g") -> str:
    """`value` formatted with `spec`, or with more digits where that would put it on the limit or the
    other side of it: a cosine of 0.97996 against 0.98 reads 0.97996 < 0.98, never 0.98 < 0.98."""
    def side(x: float) -> int:  # -1 below the limit, 0 on it, 1 above
        return (x > limit) - (x < limit)

    kind, digits = spec[-1], int(spec[1:-1])
    text = f"{value:{spec}}"
    while math.isfinite(value) and side(float(text)) != side(value) and digits < 17:
        digits += 1
        text = f"{value:.{digits}{kind}}"
    return text
