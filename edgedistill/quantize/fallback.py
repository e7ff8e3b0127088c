"""Accuracy-aware INT8 fallback for ONNX Runtime: keep the most sensitive layers in float until
fidelity on held-out views (never the calibration views) is within the target's budget.

0. The layers that write graph outputs stay float (`quantize.float_output_layers`).
1. Calibrate once; quantize everything else; measure held-out fidelity against fp32. Done if within budget.
2. Rank layers by sensitivity (one pass, see sensitivity.py), then re-rank the first
   `fallback_refine` of them by what each alone in float does to the output (refine.py).
3. Re-quantize with the k most sensitive layers excluded (`nodes_to_exclude`), reusing the
   calibration ranges (onnxruntime before 1.27 cannot load them: each round calibrates again on the same
   batch, slower, same ranges): k doubles until the budget is met, then bisects down to the smallest
   k that meets it. `fallback_max_trials` bounds the rounds, `fallback_max_float_share` bounds k.
   After re-ranking, round k=1 is the re-ranking's trial of its first layer: reused, not quantized again.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..config import QuantizeConfig
from ..progress import progress_bar
from .fidelity import Budget, Fidelity, compare, run_model
from .ort_static import prepare, quantize_ort_static
from .scratch import scratch_dir
from .refine import refine_ranking

REPORTED_SENSITIVITY = 10  # the worst layers listed in the artifact record


def output_layers(onnx_path: Path, op_types: tuple) -> list[str]:
    """Quantizable nodes whose output is a graph output (the model's heads)."""
    import onnx

    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    outputs = {o.name for o in graph.output}
    return [n.name for n in graph.node if n.op_type in op_types and outputs & set(n.output)]


def quantizable_layers(onnx_path: Path, op_types: tuple) -> int:
    import onnx

    return sum(n.op_type in op_types for n in onnx.load(str(onnx_path), load_external_data=False).graph.node)


@dataclass
class FallbackResult:
    float_layers: list[str]  # every node left in float: the output layers, then the sensitive ones
    plain: Fidelity  # every quantizable layer in INT8
    final: Fidelity  # the model written
    within_budget: bool
    quantizable_layers: int = 0
    output_layers: list[str] = field(default_factory=list)
    trials: list[dict] = field(default_factory=list)
    sensitivity_db: dict[str, float] = field(default_factory=dict)
    refined: list[dict] = field(default_factory=list)  # the re-ranked layers, each alone in float

    def as_record(self) -> dict:
        return {
            "float_layers": self.float_layers, "within_budget": self.within_budget,
            "quantizable_layers": self.quantizable_layers, "output_layers": self.output_layers, "plain_int8": self.plain.as_dict(), "final": self.final.as_dict(),
            "trials": self.trials, "most_sensitive_db": {k: round(v, 2) for k, v in list(self.sensitivity_db.items())[:REPORTED_SENSITIVITY]},
            "refined": self.refined,
        }

    def summary(self) -> str:
        def fmt(f: Fidelity) -> str:
            return f"top-1 {f.top1:.3f}, cosine {f.cosine:.4f}" if f.top1 is not None else f"cosine {f.cosine:.4f}"
        sensitive = len(self.float_layers) - len(self.output_layers)
        heads = f" ({len(self.output_layers)} output layer{'s' if len(self.output_layers) != 1 else ''} kept float)" if self.output_layers else ""
        verdict = "within budget" if self.within_budget else "STILL BELOW BUDGET"
        if not sensitive:
            return f"{self.quantizable_layers - len(self.float_layers)} of {self.quantizable_layers} layers INT8{heads}: {fmt(self.final)} on held-out views ({verdict})"
        return (f"kept {sensitive} sensitive layers in float{heads}, {self.quantizable_layers - len(self.float_layers)} of "
                f"{self.quantizable_layers} INT8: {fmt(self.plain)} -> {fmt(self.final)} on held-out views ({verdict})")


def _clearly_better(candidate: Fidelity, incumbent: Fidelity, cosine_margin: float = 1e-3) -> bool:
    """When nothing meets the budget: more float layers must buy more top-1, or clearly more cosine."""
    if candidate.top1 is not None and incumbent.top1 is not None and candidate.top1 != incumbent.top1:
        return candidate.top1 > incumbent.top1
    return candidate.cosine > incumbent.cosine + cosine_margin


def float_layer_cap(quantizable: int, max_share: float, fixed: int, ranked: int) -> int:
    """Most layers the search may keep in float on top of the fixed ones: at least one when there is
    one to try, never more than were ranked (trials past that would repeat the same exclusions)."""
    return min(max(1, int(quantizable * max_share) - fixed), ranked)


def _next_k(lo: int, hi: int | None, cap: int) -> int | None:
    """Doubling until a k passes (hi), then bisection between the largest failing lo and hi."""
    if hi is None:
        return None if lo >= cap else min(cap, max(1, 2 * lo))
    return None if hi - lo <= 1 else (lo + hi) // 2


def quantize_with_fallback(onnx_path: Path, out_path: Path, calibration: np.ndarray, holdout: np.ndarray,
                           cfg: QuantizeConfig, budget: Budget) -> FallbackResult:
    with scratch_dir(out_path) as tmp_dir:
        tmp = Path(tmp_dir)
        prepared = prepare(onnx_path, tmp / "prepared.onnx")
        ranges = tmp / "ranges.json"
        reference = run_model(prepared, holdout)
        fixed = output_layers(prepared, tuple(cfg.op_types)) if cfg.float_output_layers else []

        def trial(excluded: list[str]) -> tuple[Fidelity, Path]:
            path = tmp / f"int8-k{len(excluded)}.onnx"
            quantize_ort_static(prepared, path, calibration, cfg, nodes_to_exclude=fixed + excluded, ranges_cache=ranges, prepared=True)
            return compare(reference, run_model(path, holdout)), path

        plain, plain_path = trial([])
        result = FallbackResult(list(fixed), plain, plain, plain.meets(budget), quantizable_layers(prepared, tuple(cfg.op_types)), list(fixed))
        chosen = plain_path
        if not result.within_budget and cfg.fallback:
            from .sensitivity import layer_sensitivity

            sensitivity = layer_sensitivity(prepared, plain_path, calibration[: cfg.sensitivity_samples], tuple(cfg.op_types))
            ranking = [name for name in sensitivity if name not in fixed]
            cap = float_layer_cap(result.quantizable_layers, cfg.fallback_max_float_share, len(fixed), len(ranking))
            result.sensitivity_db = sensitivity
            best: tuple[Fidelity, int, Path] = (plain, 0, plain_path)
            lo, hi = 0, None
            # the layer alone in float that refine_ranking will put first (highest cosine, ties to the earlier),
            # with its model kept: the search's first round (k=1) is that same trial
            first_alone: dict = {}
            with progress_bar(transient=True) as bar:
                if cfg.fallback_refine > 1 and len(ranking) > 1:
                    ranking_task = bar.add_task("int8 fallback: ranking", total=min(cfg.fallback_refine, len(ranking)), info="")

                    def alone_in_float(name: str) -> Fidelity:
                        fid, path = trial([name])
                        if not first_alone or fid.cosine > first_alone["fid"].cosine:
                            kept = path.with_name("int8-alone.onnx")  # the next trial([name]) writes int8-k1.onnx again
                            os.replace(path, kept)
                            first_alone.update(name=name, fid=fid, path=kept)
                        bar.update(ranking_task, advance=1, info=f"cosine {fid.cosine:.4f}")
                        return fid

                    ranking, result.refined = refine_ranking(ranking, cfg.fallback_refine, alone_in_float)
                task = bar.add_task("int8 fallback", total=cfg.fallback_max_trials, info="")

                def record(k: int, fid: Fidelity, path: Path) -> None:
                    nonlocal lo, hi, best
                    result.trials.append({"float_layers": k, **fid.as_dict(), "within_budget": fid.meets(budget)})
                    bar.update(task, advance=1, info=f"{k} float: cosine {fid.cosine:.4f}")
                    if fid.meets(budget):
                        hi, best = k, (fid, k, path)
                    else:
                        lo = k
                        if hi is None and _clearly_better(fid, best[0]):
                            best = (fid, k, path)

                for _ in range(cfg.fallback_max_trials):
                    k = _next_k(lo, hi, cap)
                    if k is None:
                        break
                    if k == 1 and result.refined and first_alone.get("name") == ranking[0]:
                        record(1, first_alone["fid"], first_alone["path"])  # measured while re-ranking: no second quantization
                        continue
                    record(k, *trial(ranking[:k]))
            final, k, chosen = best
            result.final, result.float_layers, result.within_budget = final, fixed + ranking[:k], final.meets(budget)
        os.replace(chosen, out_path)  # the scratch folder is beside out_path: a rename, no second copy on disk
    return result
