"""Pick the artifact a target should ship: the fastest measured one inside the fidelity budget.

The rule is fixed by docs/report-schema.md. Estimated figures never win: only a measured
latency says how fast an artifact really is. A null fidelity value does not disqualify
(e.g. no classifier means no top-1 agreement), but the reason says it was not checked; a
non-finite one (NaN, inf) fails the budget.
Latency is noisy (byte-identical models differ by several percent between runs), so every
artifact whose p50 lies within the target's `selection_tolerance` of the fastest counts as
tied, and the tie goes to the smaller file, then the higher cosine, then the name.
With nothing measured on the target at all, nothing is selected: the fp32 reference is a
fallback for a budget nobody meets, not a choice to make from estimates.
Only the target's own rows compete: those that ran on its device with one of its backends, at one
of its precisions. On an
OpenVINO GPU target the ONNX Runtime rows ran on the host CPU; their latency says nothing about
the GPU, and a CPU is no choice for someone buying the GPU (gates.py skips them too).
"""

from __future__ import annotations

import math

from ..targets import TargetProfile
from .schema import artifacts_of, beside_limit, check_latencies, fidelity_of, p50_of

# p50s within this share of the fastest are tied, unless the target record sets selection_tolerance.
DEFAULT_TOLERANCE = TargetProfile.selection_tolerance  # the profile field's default, 5%

# (fidelity key, target budget key, words used in reasons)
_BUDGETS = (
    ("cosine_vs_fp32", "min_cosine", "cosine"),
    ("top1_agreement_vs_fp32", "min_top1_agreement", "top-1 agreement"),
)


def _budget(report: dict) -> list[tuple[str, float, str]]:
    target = report.get("target") or {}
    out = []
    for key, budget_key, words in _BUDGETS:
        limit = target.get(budget_key)
        if isinstance(limit, (int, float)):
            out.append((key, float(limit), words))
    return out


# A student without a classifier has no top-1 agreement; with a zero-shot head (bench.zero_shot_head) its zero-shot
# class's agreement with the fp32 model's is the decision the top-1 budget checks instead.
_STANDS_IN = {"top1_agreement_vs_fp32": ("zero_shot_agreement_vs_fp32", "zero-shot agreement")}


def _budget_value(art: dict, key: str, words: str) -> tuple[object, str]:
    """(the fidelity figure a budget line checks, the words naming it)."""
    value = fidelity_of(art, key)
    if value is None and key in _STANDS_IN:
        other, other_words = _STANDS_IN[key]
        if fidelity_of(art, other) is not None:
            return fidelity_of(art, other), other_words
    return value, words


def _failures(art: dict, budget: list[tuple[str, float, str]]) -> list[str]:
    """Budget lines this artifact misses, e.g. 'cosine 0.972 < 0.98'."""
    misses = []
    for key, limit, words in budget:
        value, words = _budget_value(art, key, words)
        if value is not None and not math.isfinite(value):
            misses.append(f"{words} {value} is not finite")
        elif value is not None and value < limit:
            misses.append(f"{words} {beside_limit(value, limit)} < {limit:g}")
    return misses


def _unchecked(art: dict, budget: list[tuple[str, float, str]]) -> list[str]:
    return [words for key, _, words in budget if _budget_value(art, key, words)[0] is None]


def reference_artifact(report: dict) -> dict | None:
    """The fidelity reference: ONNX Runtime fp32 (measured first if there are several)."""
    refs = [a for a in artifacts_of(report) if a.get("backend") == "onnxruntime" and a.get("precision") == "fp32"]
    refs.sort(key=lambda a: a.get("status") != "measured")
    return refs[0] if refs else None


def off_target(art: dict, target: dict) -> str | None:
    """Why a row is not the target's own ("ran on the CPU, not the target's GPU"), None when it is.

    A row without a device, or a target record without a device, backends or precisions (bench.json
    files written before they were recorded), is not held against the row."""
    device, wanted = str(art.get("device") or ""), str(target.get("device") or "")
    if device and wanted and device.upper() != wanted.upper():
        return f"ran on the {device}, not the target's {wanted}"
    backends = target.get("backends")
    if isinstance(backends, (list, tuple)) and backends and art.get("backend") not in backends:
        return f"ran with {art.get('backend')}, not the target's {' or '.join(map(str, backends))}"
    return None


def not_a_choice(art: dict, target: dict) -> str | None:
    """Why a row may not be selected for the target: it ran off the target (off_target), or at a
    precision the target's profile does not run (an INT8 model for a profile of precisions [fp32])."""
    precisions = target.get("precisions")
    if isinstance(precisions, (list, tuple)) and precisions and art.get("precision") and art.get("precision") not in precisions:
        return f"ran at {art.get('precision')}, not one of the target's precisions ({', '.join(map(str, precisions))})"
    return off_target(art, target)


def select_artifact(report: dict) -> dict:
    """{"artifact": name or None, "reason": one sentence} for a bench or report document."""
    # A document that did not come through load_reports (the build's own report stage, the API) is checked here.
    check_latencies(report, report.get("_source") or "bench document")
    budget = _budget(report)
    target = report.get("target") or {}
    every = artifacts_of(report)
    arts = [a for a in every if not_a_choice(a, target) is None]
    measured = [a for a in arts if a.get("status") == "measured" and p50_of(a) is not None]
    aside = _set_aside(every, target)
    within = [a for a in measured if not _failures(a, budget)]
    if within:
        best, reason = _fastest_or_tied(within, _tolerance(report))
        # each line named as it was checked for this row: "zero-shot agreement" where it stood in for top-1 agreement
        reason += f" ({', '.join(f'{_budget_value(best, key, words)[1]} >= {limit:g}' for key, limit, words in budget) or 'no fidelity budget set'})"
        unchecked = _unchecked(best, budget)
        if unchecked:
            reason += f"; {' and '.join(unchecked)} not computed for it, so not checked"
        return {"artifact": best.get("name"), "reason": reason + aside}

    if not measured:
        return {"artifact": None, "reason": _nothing_measured_reason(arts) + aside}
    why = _no_candidate_reason(measured, budget)
    ref = reference_artifact(report)
    if ref is None:
        return {"artifact": None, "reason": f"{why}; no fp32 ONNX Runtime reference to fall back to{aside}"}
    if ref.get("status") != "measured":  # a failed reference is no artifact to ship
        return {"artifact": None, "reason": f"{why}; the fp32 reference to fall back to is {ref.get('status')} too{aside}"}
    where = off_target(ref, target)
    if where is None:
        return {"artifact": ref.get("name"), "reason": f"{why}; fell back to the fp32 reference{aside}"}
    # Still the fallback (the model as trained), but its latency is not the target's: say where it ran.
    return {"artifact": ref.get("name"), "reason": f"{why}; fell back to the fp32 reference, which {where}, "
                                                   f"so its latency is not the target's{_set_aside(every, target, skip=ref)}"}


def _set_aside(arts: list[dict], target: dict, skip: dict | None = None) -> str:
    """'; onnx-fp32 ran on the CPU, not the target's GPU, so it did not compete' for rows measured off the target."""
    off = [(a.get("name"), why) for a in arts
           if a is not skip and a.get("status") == "measured" and (why := not_a_choice(a, target))]
    if not off:
        return ""
    by_why: dict[str, list[str]] = {}
    for name, why in off:
        by_why.setdefault(why, []).append(str(name))
    return "".join(f"; {', '.join(names)} {why}, so {'it' if len(names) == 1 else 'they'} did not compete"
                   for why, names in by_why.items())


def _tolerance(report: dict) -> float:
    """The target's selection_tolerance (a share: 0.05 = 5%); the default when absent or invalid."""
    value = (report.get("target") or {}).get("selection_tolerance")
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and 0 <= value < 1
    return float(value) if ok else DEFAULT_TOLERANCE


def _number_or(value, default: float) -> float:
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else default


# The tie order, each with the words that say why the winner won on it.
_TIE_ORDER = (
    (lambda a: _number_or(a.get("size_mb"), math.inf), "smaller file"),
    (lambda a: -_number_or(fidelity_of(a, "cosine_vs_fp32"), -math.inf), "higher cosine vs fp32"),
    (lambda a: str(a.get("name")), "name order"),
)


def _fastest_or_tied(within: list[dict], tolerance: float) -> tuple[dict, str]:
    """The artifact to ship among those within the budget, and the start of the reason.

    p50s within `tolerance` of the fastest are tied (the gap is below the run-to-run noise);
    the tie goes to the smaller file, then the higher cosine vs fp32, then the name."""
    fastest = min(p50_of(a) for a in within)
    tied = [a for a in within if p50_of(a) <= fastest * (1 + tolerance)]
    tied.sort(key=lambda a: tuple(key(a) for key, _ in _TIE_ORDER))
    best = tied[0]
    if len(tied) == 1:
        return best, "fastest measured artifact within the budget"
    runner_up = tied[1]
    decided = next((words for key, words in _TIE_ORDER if key(best) != key(runner_up)), _TIE_ORDER[-1][1])
    others = ", ".join(str(a.get("name")) for a in tied[1:])
    if p50_of(best) == fastest:  # the tie changed nothing, but say that it was one
        return best, (f"fastest measured artifact within the budget ({fastest:.4g} ms); {others} within {tolerance * 100:g}% "
                      f"of it tied, and the tie also goes to this one: {decided}")
    return best, (f"{p50_of(best):.4g} ms, within {tolerance * 100:g}% of the fastest ({fastest:.4g} ms), "
                  f"tied with {others}: {decided}; measured, within the budget")


NOTHING_MEASURED = "nothing measured on this target yet"


def _nothing_measured_reason(arts: list[dict]) -> str:
    """'nothing measured on this target yet; estimates only' (or the statuses there are instead)."""
    counts: dict[str, int] = {}
    for a in arts:
        status = str(a.get("status") or "unknown")
        status = "measured without a latency" if status == "measured" else status
        counts[status] = counts.get(status, 0) + 1
    if counts and set(counts) <= {"estimated"}:
        return f"{NOTHING_MEASURED}; estimates only"
    seen = ", ".join(f"{n} {s}" for s, n in counts.items()) or "no artifacts"
    return f"{NOTHING_MEASURED} ({seen})"


def _no_candidate_reason(measured: list[dict], budget) -> str:
    misses = "; ".join(f"{a.get('name')}: {', '.join(_failures(a, budget))}" for a in measured)
    return f"no measured artifact within the budget ({misses})"
