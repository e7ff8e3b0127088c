"""INT8 fidelity on the offline EfficientNet-Lite0 teacher -> the EfficientNet-Lite0 INT8 figures in docs/backends.md.

    python benchmarks/int8_fallback.py            # about 3 minutes on 2 cores
    python benchmarks/int8_fallback.py --tiny     # about 1 minute: few views, 2 leave-one-out layers

Setup as a build on the x86-cpu target: its calibration recipe (64 crops), its budget, the fallback's
48 selection views (quantize.holdout_images) and 96 other evaluation views, on which every row is
scored against ORT fp32. Rows:
  plain        every Conv/Gemm INT8, the output head too (quantize.fallback=false, float_output_layers=false)
  SQNR only    head float + fallback in SQNR's order (quantize.fallback_refine=0)
  default      QuantizeConfig(): head float + fallback, its first 8 layers re-ranked by their output effect
  NNCF cnn / transformer   OpenVINO INT8 with each nncf_model_type (f32 hint), for comparison
Leave-one-out: from the fallback's starting point (head float, the rest INT8), each quantized layer
alone back in float, scored on the selection views: what ranking by output fidelity would see,
next to the SQNR rank the fallback uses. A fidelity table, not timings: load on the host does not
change it.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np

from edgedistill.bench.host import describe_host
from edgedistill.config import ExportConfig, QuantizeConfig
from edgedistill.data.eval_set import evaluation_views
from edgedistill.export.stage import export_checked
from edgedistill.models.offline_teacher import load_offline_efficientnet_lite0
from edgedistill.models.preprocess import preprocess_images, resolve_data_config
from edgedistill.quantize.calibration import calibration_batch, holdout_views, load_recipe
from edgedistill.quantize.fallback import output_layers, quantize_with_fallback
from edgedistill.quantize.fidelity import Budget, Fidelity, compare, run_model
from edgedistill.quantize.nncf_ov import quantize_openvino_int8
from edgedistill.quantize.ort_static import prepare, quantize_ort_static
from edgedistill.quantize.sensitivity import layer_sensitivity
from edgedistill.targets import load_target

ROOT = Path(__file__).resolve().parents[1]
TARGET = "x86-cpu"
VERSIONS = ("onnxruntime", "openvino", "nncf", "torch", "timm")


def leave_one_out(onnx: Path, calibration: np.ndarray, selection: np.ndarray, cfg: QuantizeConfig, limit: int | None) -> dict:
    """Cosine on the selection views with each quantized layer alone in float (the head stays float,
    as in the fallback), and each layer's SQNR rank; the `limit` lowest-SQNR layers when given."""
    ops = tuple(cfg.op_types)
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        prepared = prepare(onnx, tmp / "prepared.onnx")
        heads, ranges = output_layers(prepared, ops), tmp / "ranges.json"  # ranges cached: later rounds only re-quantize
        reference = run_model(prepared, selection)

        def quantized(excluded: list[str], name: str) -> Path:
            return quantize_ort_static(prepared, tmp / name, calibration, cfg, nodes_to_exclude=heads + excluded, ranges_cache=ranges, prepared=True)

        def cosine(path: Path) -> float:
            return compare(reference, run_model(path, selection)).cosine

        start = quantized([], "start.onnx")
        baseline = cosine(start)
        sqnr = layer_sensitivity(prepared, start, calibration[: cfg.sensitivity_samples], ops)  # the fallback's ranking
        ranked = [name for name in sqnr if name not in heads][:limit]
        layers = [{"layer": name, "sqnr_rank": rank, "sqnr_db": round(sqnr[name], 2), "cosine": cosine(quantized([name], "one-float.onnx"))}
                  for rank, name in enumerate(ranked, 1)]
    layers.sort(key=lambda layer: -layer["cosine"])
    return {"baseline_cosine": baseline, "layers_tried": len(layers), "max_cosine": layers[0]["cosine"], "layers": layers}


def nncf_row(onnx: Path, work: Path, calibration: np.ndarray, evaluation: np.ndarray, reference: dict, model_type: str) -> dict:
    xml = work / f"nncf-{model_type}" / "model.xml"
    applied = quantize_openvino_int8(onnx, xml, calibration, replace(QuantizeConfig(), nncf_model_type=model_type))
    fid = compare(reference, run_model(xml, evaluation, backend="openvino", precision_hint="f32"))
    return row(f"OpenVINO NNCF INT8, {model_type} scheme", fid, None, None) | {"applied": applied}


def row(name: str, fid: Fidelity, float_layers: int | None, quantizable: int | None) -> dict:
    return {"name": name, **fid.as_dict(), "float_layers": float_layers, "quantizable_layers": quantizable}


def measure(args, work: Path) -> dict:
    target = load_target(TARGET)
    recipe = load_recipe(target.calibration)
    recipe = replace(recipe, samples=args.calibration or recipe.samples)
    budget, cfg = Budget.of(target), QuantizeConfig()
    model = load_offline_efficientnet_lite0()
    data_config = resolve_data_config(model)
    evaluation = preprocess_images(evaluation_views("bundled", args.eval_views), data_config)
    calibration = calibration_batch(recipe, data_config, work / "cache")
    selection = holdout_views(recipe, data_config, args.selection_views, work / "cache").batch
    onnx = work / "teacher.onnx"
    export_checked(model, ["logits"], data_config["input_size"], onnx, ExportConfig(), evaluation[:8])
    reference = run_model(onnx, evaluation)

    def ort_row(name: str, variant: QuantizeConfig, file: str, goal: Budget = budget) -> tuple[dict, dict]:
        result = quantize_with_fallback(onnx, work / file, calibration, selection, variant, goal)
        fid = compare(reference, run_model(work / file, evaluation))
        # the rounds it took: the search's trials, and the re-ranking's one per layer tried alone
        rounds = {"search_trials": [t["float_layers"] for t in result.trials], "rerank_rounds": len(result.refined)}
        return row(name, fid, len(result.float_layers), result.quantizable_layers) | rounds, result.as_record()

    plain, _ = ort_row("plain (every Conv/Gemm)", replace(cfg, fallback=False, float_output_layers=False), "plain.onnx")
    sqnr_only, _ = ort_row("head float + fallback, SQNR order only (fallback_refine=0)", replace(cfg, fallback_refine=0), "sqnr.onnx")
    default, fallback = ort_row("default: head float + fallback (SQNR, first 8 re-ranked)", cfg, "default.onnx")
    # The target's top-1 budget is out of INT8's reach on this CNN (below): its cosine budget alone shows
    # how many float layers each ranking needs to meet one
    cosine_only = Budget(budget.min_cosine, 0.0)
    sqnr_cosine, _ = ort_row(f"cosine budget {cosine_only.min_cosine} only: SQNR order", replace(cfg, fallback_refine=0), "sqnr-cos.onnx", cosine_only)
    refined_cosine, _ = ort_row(f"cosine budget {cosine_only.min_cosine} only: first 8 re-ranked", cfg, "refined-cos.onnx", cosine_only)
    rows = [plain, sqnr_only, default, sqnr_cosine, refined_cosine]
    rows += [nncf_row(onnx, work, calibration, evaluation, reference, kind) for kind in ("cnn", "transformer")]
    return {
        "date": dt.date.today().isoformat(),
        "command": "python " + " ".join(["benchmarks/int8_fallback.py", *sys.argv[1:]]),
        "host": {k: v for k, v in describe_host().items() if k != "hostname"},  # committed: the machine's name says nothing
        "setup": {"model": "tf_efficientnet_lite0 (offline teacher)", "target": TARGET, "budget": budget.__dict__,
                  "calibration": recipe.__dict__, "selection_views": len(selection), "evaluation_views": len(evaluation)},
        "rows": rows,
        "fallback": fallback,
        "leave_one_out": leave_one_out(onnx, calibration, selection, cfg, args.loo_layers),
    }


def markdown(result: dict) -> str:
    host, setup, loo = result["host"], result["setup"], result["leave_one_out"]
    versions = ", ".join(f"{k} {host['versions'][k]}" for k in VERSIONS if k in host["versions"])
    lines = [
        f"Measured {result['date']} on {host['cpu_model']} ({host['cores_logical']} logical cores), {host['os']}; {versions}.",
        f"Command: `{result['command']}`. {setup['calibration']['samples']} calibration crops, {setup['selection_views']} selection views, "
        f"scored on {setup['evaluation_views']} other evaluation views vs ORT fp32; {setup['target']} budget "
        f"(cosine >= {setup['budget']['min_cosine']}, top-1 >= {setup['budget']['min_top1']}).",
        "",
        "| INT8 on EfficientNet-Lite0 | cosine vs fp32 | top-1 vs fp32 | float layers |",
        "|---|---:|---:|---:|",
    ]
    for r in result["rows"]:
        layers = "n/a" if r["float_layers"] is None else f"{r['float_layers']} of {r['quantizable_layers']}"
        lines.append(f"| {r['name']} | {r['cosine']:.4f} | {r['top1']:.3f} | {layers} |")
    trials = ", ".join(f"{t['float_layers']} float: cosine {t['cosine']:.4f} / top-1 {t['top1']:.3f}" for t in result["fallback"]["trials"]) or "none needed"
    top = ", ".join(f"`{r['layer']}` (SQNR rank {r['sqnr_rank']}) {r['cosine']:.4f}" for r in loo["layers"][:3])
    lines += ["", f"Fallback trials on the selection views (within budget: {result['fallback']['within_budget']}): {trials}.",
              "", f"Leave-one-out over {loo['layers_tried']} layers on the selection views: cosine {loo['baseline_cosine']:.4f} with the head float, "
              f"at most {loo['max_cosine']:.4f} with one more layer float; best: {top}."]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / f"{dt.date.today().isoformat()}-cpu" / "int8_fallback")
    parser.add_argument("--calibration", type=int, default=None, help="calibration crops (default: the target's recipe)")
    parser.add_argument("--selection-views", type=int, default=QuantizeConfig().holdout_images)
    parser.add_argument("--eval-views", type=int, default=96)
    parser.add_argument("--loo-layers", type=int, default=None, help="leave-one-out on the N lowest-SQNR layers (default: all)")
    parser.add_argument("--tiny", action="store_true", help="smoke run: 8 crops and views, 2 leave-one-out layers")
    args = parser.parse_args()
    if args.tiny:
        args.calibration, args.selection_views, args.eval_views, args.loo_layers = 8, 8, 8, 2
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as work:  # models and crops are rebuilt each run; only the JSON is kept
        result = measure(args, Path(work))
    (args.out / "int8_fallback.json").write_text(json.dumps(result, indent=2, default=str))
    print(markdown(result))
    print(f"wrote {args.out / 'int8_fallback.json'}")


if __name__ == "__main__":
    main()
