"""Fidelity and latency per backend and precision for a distilled ViT on this CPU -> docs/backends.md.

    python benchmarks/backend_table.py                       # builds runs/bench-backends first (a few minutes)
    python benchmarks/backend_table.py --build runs/demo      # reuse an `edgedistill build --target x86-cpu` folder

Every variant is made from the build's model.onnx with the same calibration batch, measured on the
build's evaluation views (never the calibration or fallback-selection views) against ORT fp32,
and timed in this one run (batch 1, p50 of --iterations after warm-up).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

from edgedistill.backends import get_backend
from edgedistill.backends.openvino_backend import convert_to_ir
from edgedistill.bench.fidelity import fidelity
from edgedistill.bench.host import describe_host
from edgedistill.bench.latency import measure_latency
from edgedistill.config import QuantizeConfig
from edgedistill.quantize.calibration import calibration_batch, holdout_views, load_recipe
from edgedistill.quantize.fallback import quantize_with_fallback
from edgedistill.quantize.fidelity import Budget
from edgedistill.quantize.nncf_ov import quantize_openvino_int8
from edgedistill.targets import load_target

sys.path.insert(0, str(Path(__file__).resolve().parent))  # run as a script or imported by the tests
from doc_markers import replace_between  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "backends.md"
START, END = "<!-- backend-table:start -->", "<!-- backend-table:end -->"
STRICT = Budget(min_cosine=0.9999, min_top1=0.99)  # tighter than any target: shows what the fallback trades


def ensure_build(build: Path, steps: int) -> None:
    if (build / "manifest.json").is_file() and json.loads((build / "manifest.json").read_text()).get("status") == "complete":
        return
    cmd = [sys.executable, "-m", "edgedistill", "build", "--target", "x86-cpu", "--out", str(build), "--set", f"distill.steps={steps}",
           "--set", "bench.iterations=20"]  # the build's own bench is not used here: keep it short
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)


def make_variants(build: Path, work: Path, target) -> tuple[list[dict], dict]:
    """(variants to measure, notes about how they were made)."""
    manifest = json.loads((build / "manifest.json").read_text())
    onnx = build / manifest["artifacts"]["onnx-fp32"]["path"]
    data_config = manifest["artifacts"]["onnx-fp32"]["data_config"]
    recipe = load_recipe(target.calibration)
    batch = calibration_batch(recipe, data_config, build / ".cache")
    holdout = holdout_views(recipe, data_config, QuantizeConfig().holdout_images, build / ".cache").batch
    work.mkdir(parents=True, exist_ok=True)
    notes = {}
    quantize_with_fallback(onnx, work / "int8-plain.onnx", batch, holdout, QuantizeConfig(fallback=False, float_output_layers=False), Budget.of(target))
    fallback = quantize_with_fallback(onnx, work / "int8-fallback.onnx", batch, holdout, QuantizeConfig(), Budget.of(target))
    strict = quantize_with_fallback(onnx, work / "int8-strict.onnx", batch, holdout, QuantizeConfig(), STRICT)
    notes["fallback"] = {f"target budget (cosine >= {target.min_cosine}, top-1 >= {target.min_top1_agreement})": fallback.as_record(),
                        "strict budget (cosine >= 0.9999, top-1 >= 0.99)": strict.as_record()}
    fp32_ir = convert_to_ir(onnx, work / "ov-fp32" / "model.xml")
    fp16_ir = convert_to_ir(onnx, work / "ov-fp16" / "model.xml", fp16_weights=True)
    notes["nncf"] = quantize_openvino_int8(onnx, work / "ov-int8" / "model.xml", batch, QuantizeConfig())
    notes["nncf_no_sq"] = quantize_openvino_int8(onnx, work / "ov-int8-nosq" / "model.xml", batch, replace(QuantizeConfig(), nncf_smooth_quant=False))
    ort, ov = "onnxruntime", "openvino"
    variants = [
        dict(name="ORT fp32", backend=ort, path=onnx),
        dict(name="ORT int8 (plain: every MatMul/Gemm/Conv, output heads too)", backend=ort, path=work / "int8-plain.onnx"),
        dict(name=f"ORT int8 (default: output heads float + fallback to the target budget: {len(fallback.float_layers)} float layers)", backend=ort, path=work / "int8-fallback.onnx"),
        dict(name=f"ORT int8 (fallback, cosine >= 0.9999: {len(strict.float_layers)} float layers)", backend=ort, path=work / "int8-strict.onnx"),
        dict(name="OpenVINO fp32 (hint f32)", backend=ov, path=fp32_ir, options={"precision_hint": "f32"}),
        dict(name="OpenVINO fp32 (no hint: runtime default)", backend=ov, path=fp32_ir, options={"precision_hint": "default"}),
        dict(name="OpenVINO fp16 weights (hint f32)", backend=ov, path=fp16_ir, options={"precision_hint": "f32"}),
        dict(name=f"OpenVINO int8 (NNCF {notes['nncf']['model_type']}, SmoothQuant)", backend=ov, path=work / "ov-int8" / "model.xml", options={"precision_hint": "f32"}),
        dict(name=f"OpenVINO int8 (NNCF {notes['nncf_no_sq']['model_type']}, no SmoothQuant)", backend=ov, path=work / "ov-int8-nosq" / "model.xml", options={"precision_hint": "f32"}),
    ]
    return variants, notes


def measure(variants: list[dict], inputs: np.ndarray, teacher_logits, threads: int | None, iterations: int, rounds: int) -> list[dict]:
    """Fidelity once per variant; latency in `rounds` interleaved rounds (variant A, B, ..., A, B, ...)
    so drifting load from other processes on a shared host hits every variant alike."""
    from contextlib import ExitStack

    rows, runners, reference = [], [], None
    with ExitStack() as stack:
        for variant in variants:
            runner = stack.enter_context(get_backend(variant["backend"]).runner(variant["path"], threads=threads, **variant.get("options", {})))
            outputs = runner.infer_all(inputs)
            reference = reference or outputs  # the first variant is ORT fp32
            runners.append(runner)
            rows.append({"name": variant["name"], **fidelity(outputs, reference, teacher_logits), "settings": runner.runtime_settings(), "p50s": []})
        feeds = {"input": inputs[:1]}
        for _ in range(rounds):
            for row, runner in zip(rows, runners):
                row["p50s"].append(measure_latency(runner, feeds, warmup=3, iterations=max(5, iterations // rounds)).p50)
    for row in rows:
        row["p50_ms"] = float(np.median(row["p50s"]))
        print(f"{row['name']:70s} p50 {row['p50_ms']:7.2f} ms  cosine {row['cosine_vs_fp32']:.5f}", flush=True)
    return rows


def markdown(rows: list[dict], host: dict, command: str, notes: dict) -> str:
    base = rows[0]["p50_ms"]
    fmt = lambda v, spec: "n/a" if v is None else format(v, spec)  # noqa: E731
    lines = [
        f"Measured {dt.date.today().isoformat()} on {host['cpu_model']} ({host['cores_logical']} logical cores, ISA: {', '.join(host['isa'])}), "
        f"{host['os']}; " + ", ".join(f"{k} {v}" for k, v in host["versions"].items() if k in ("onnxruntime", "openvino", "nncf", "torch", "timm")) + ".",
        f"Command: `{command}`. Batch 1; p50 = median of the p50s of {len(rows[0]['p50s'])} interleaved timing rounds; "
        f"fidelity on the build's {rows[0]['samples']} evaluation views vs ORT fp32.",
        "",
        "| backend / precision | cosine vs fp32 | top-1 vs fp32 | p50 ms | p50 vs ORT fp32 | precision the runtime used |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        used = r["settings"].get("INFERENCE_PRECISION_HINT") or "fp32 / QDQ int8 (ORT CPU EP)"
        lines.append(f"| {r['name']} | {fmt(r['cosine_vs_fp32'], '.5f')} | {fmt(r['top1_agreement_vs_fp32'], '.3f')} | {r['p50_ms']:.2f} | "
                     f"{r['p50_ms'] / base:.2f}x | {used} |")
    for label, record in notes["fallback"].items():
        plain, final = record["plain_int8"], record["final"]
        trials = ", ".join(f"{t['float_layers']} float: cosine {t['cosine']:.5f}" for t in record["trials"]) or "none needed"
        lines.append(f"\nFallback, {label}: plain int8 on the selection views cosine {plain['cosine']:.5f} / top-1 {fmt(plain['top1'], '.3f')}; "
                     f"kept {len(record['float_layers'])} of {record['quantizable_layers'] or 'all'} layers in float "
                     f"(within budget: {record['within_budget']}) -> cosine {final['cosine']:.5f}. Trials: {trials}. "
                     f"Float layers: {', '.join(f'`{n}`' for n in record['float_layers']) or 'none'}.")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--build", type=Path, default=ROOT / "runs" / "bench-backends")
    parser.add_argument("--steps", type=int, default=60, help="distillation steps when the build is made here")
    parser.add_argument("--iterations", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=5, help="interleaved timing rounds; p50 is their median")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--no-doc", action="store_true", help="print the table, leave docs/backends.md alone")
    args = parser.parse_args()
    ensure_build(args.build, args.steps)
    target = load_target("x86-cpu")
    variants, notes = make_variants(args.build, args.build / "backend_table", target)
    evalset = args.build / "eval"
    inputs = np.load(evalset / "inputs.npy")
    teacher = np.load(evalset / "teacher_logits.npy") if (evalset / "teacher_logits.npy").is_file() else None
    rows = measure(variants, inputs, teacher, args.threads, args.iterations, args.rounds)
    command = "python " + " ".join(["benchmarks/backend_table.py", *sys.argv[1:]])
    table = markdown(rows, describe_host(), command, notes)
    (args.build / "backend_table.json").write_text(json.dumps({"rows": rows, "notes": notes}, indent=2, default=str))
    print(table)
    if not args.no_doc:
        replace_between(DOC, START, END, table, template=f"# Backends\n\n{START}\n{END}\n")
        print(f"wrote {DOC}")


if __name__ == "__main__":
    main()
