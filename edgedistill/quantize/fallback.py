"""Accuracy-aware INT8 fallback for ONNX Runtime: keep the most sensitive layers in float until
fidelity on held-out views (never the calibration views) is within the target's budget.

1. Calibrate once; quantize everything; measure held-out fidelity against fp32. Done if within budget.
2. Rank layers by sensitivity (one pass, see sensitivity.py).
3. Re-quantize with the k most sensitive layers excluded (`nodes_to_exclude`), reusing the
   calibration ranges: k doubles until the budget is met, then bisects down to the smallest
   k that meets it. `fallback_max_trials` bounds the rounds, `fallback_max_float_share` bounds k.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..config import QuantizeConfig
from ..progress import progress_bar
from .fidelity import Budget, Fidelity, compare, run_model
from .ort_static import prepare, quantize_ort_static

REPORTED_SENSITIVITY = 10  # the worst layers listed in the artifact record


@dataclass
class FallbackResult:
    float_layers: list[str]
    plain: Fidelity  # every quantizable layer in INT8
    final: Fidelity  # the model written
    within_budget: bool
    quantizable_layers: int = 0
    trials: list[dict] = field(default_factory=list)
    sensitivity_db: dict[str, float] = field(default_factory=dict)

    def as_record(self) -> dict:
        return {
            "float_layers": self.float_layers, "within_budget": self.within_budget,
            "quantizable_layers": self.quantizable_layers, "plain_int8": self.plain.as_dict(), "final": self.final.as_dict(),
            "trials": self.trials, "most_sensitive_db": {k: round(v, 2) for k, v in list(self.sensitivity_db.items())[:REPORTED_SENSITIVITY]},
        }

    def summary(self) -> str:
        def fmt(f: Fidelity) -> str:
            return f"top-1 {f.top1:.3f}, cosine {f.cosine:.4f}" if f.top1 is not None else f"cosine {f.cosine:.4f}"
        if not self.float_layers:
            return f"all layers INT8 ({fmt(self.final)} on held-out views)"
        verdict = "within budget" if self.within_budget else "STILL BELOW BUDGET"
        return (f"kept {len(self.float_layers)} of {self.quantizable_layers} layers in float: {fmt(self.plain)} -> {fmt(self.final)} "
                f"on held-out views ({verdict})")


def _next_k(lo: int, hi: int | None, cap: int) -> int | None:
    """Doubling until a k passes (hi), then bisection between the largest failing lo and hi."""
    if hi is None:
        return None if lo >= cap else min(cap, max(1, 2 * lo))
    return None if hi - lo <= 1 else (lo + hi) // 2


def quantize_with_fallback(onnx_path: Path, out_path: Path, calibration: np.ndarray, holdout: np.ndarray,
                           cfg: QuantizeConfig, budget: Budget) -> FallbackResult:
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        prepared = prepare(onnx_path, tmp / "prepared.onnx")
        ranges = tmp / "ranges.json"
        reference = run_model(prepared, holdout)

        def trial(excluded: list[str]) -> tuple[Fidelity, Path]:
            path = tmp / f"int8-k{len(excluded)}.onnx"
            quantize_ort_static(prepared, path, calibration, cfg, nodes_to_exclude=excluded, ranges_cache=ranges, prepared=True)
            return compare(reference, run_model(path, holdout)), path

        plain, plain_path = trial([])
        result = FallbackResult([], plain, plain, plain.meets(budget))
        chosen = plain_path
        if not result.within_budget and cfg.fallback:
            from .sensitivity import layer_sensitivity

            sensitivity = layer_sensitivity(prepared, plain_path, calibration[: cfg.sensitivity_samples], tuple(cfg.op_types))
            ranking = list(sensitivity)
            cap = max(1, int(len(ranking) * cfg.fallback_max_float_share))
            result.sensitivity_db, result.quantizable_layers = sensitivity, len(ranking)
            best: tuple[Fidelity, int, Path] = (plain, 0, plain_path)
            lo, hi = 0, None
            with progress_bar(transient=True) as bar:
                task = bar.add_task("int8 fallback", total=cfg.fallback_max_trials, info="")
                for _ in range(cfg.fallback_max_trials):
                    k = _next_k(lo, hi, cap)
                    if k is None:
                        break
                    fid, path = trial(ranking[:k])
                    result.trials.append({"float_layers": k, **fid.as_dict(), "within_budget": fid.meets(budget)})
                    bar.update(task, advance=1, info=f"{k} float: cosine {fid.cosine:.4f}")
                    if fid.meets(budget):
                        hi, best = k, (fid, k, path)
                    else:
                        lo = k
                        if hi is None and fid.score() > best[0].score():
                            best = (fid, k, path)
            final, k, chosen = best
            result.final, result.float_layers, result.within_budget = final, ranking[:k], final.meets(budget)
        shutil.copyfile(chosen, out_path)
    return result
