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
from edgedistill.bench.fidelity import fidelity, run_all
from edgedistill.bench.host import describe_host
from edgedistill.bench.latency import measure_latency
from edgedistill.config import QuantizeConfig
from edgedistill.quantize.calibration import calibration_batch, holdout_batch, load_recipe
from edgedistill.quantize.fallback import quantize_with_fallback
from edgedistill.quantize.fidelity import Budget
from edgedistill.quantize.nncf_ov import quantize_openvino_int8
from edgedistill.targets import load_target

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "backends.md"
START, END = "<!-- backend-table:start -->", "<!-- backend-table:end -->"
STRICT = Budget(min_cosine=0.999, min_top1=0.99)  # the issue's bar for the selected artifact


def ensure_build(build: Path, steps: int) -> None:
    if (build / "manifest.json").is_file() and json.loads((build / "manifest.json").read_text()).get("status") == "complete":
        return
    cmd = [sys.executable, "-m", "edgedistill", "build", "--target", "x86-cpu", "--out", str(build), "--set", f"distill.steps={steps}"]
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)


def make_variants(build: Path, work: Path, target) -> tuple[list[dict], dict]:
    """(variants to measure, notes about how they were made)."""
    manifest = json.loads((build / "manifest.json").read_text())
    onnx = build / manifest["artifacts"]["onnx-fp32"]["path"]
    data_config = manifest["artifacts"]["onnx-fp32"]["data_config"]
    recipe = load_recipe(target.calibration)
    batch = calibration_batch(recipe, data_config, build / ".cache")
    holdout = holdout_batch(recipe, data_config, QuantizeConfig().holdout_images, build / ".cache")
    work.mkdir(parents=True, exist_ok=True)
    notes = {}
    plain = quantize_with_fallback(onnx, work / "int8-plain.onnx", batch, holdout, QuantizeConfig(fallback=False), Budget.of(target))
    fallback = quantize_with_fallback(onnx, work / "int8-fallback.onnx", batch, holdout, QuantizeConfig(), Budget.of(target))
    strict = quantize_with_fallback(onnx, work / "int8-strict.onnx", batch, holdout, QuantizeConfig(), STRICT)
    notes["fallback"] = {"target budget": fallback.as_record(), "strict budget": strict.as_record()}
    fp32_ir = convert_to_ir(onnx, work / "ov-fp32" / "model.xml")
    fp16_ir = convert_to_ir(onnx, work / "ov-fp16" / "model.xml", fp16_weights=True)
    notes["nncf"] = quantize_openvino_int8(onnx, work / "ov-int8" / "model.xml", batch, QuantizeConfig())
    notes["nncf_no_sq"] = quantize_openvino_int8(onnx, work / "ov-int8-nosq" / "model.xml", batch, replace(QuantizeConfig(), nncf_smooth_quant=False))
    ort, ov = "onnxruntime", "openvino"
    variants = [
        dict(name="ORT fp32", backend=ort, path=onnx),
        dict(name="ORT int8 (plain)", backend=ort, path=work / "int8-plain.onnx"),
        dict(name=f"ORT int8 (fallback, target budget: {len(fallback.float_layers)} float layers)", backend=ort, path=work / "int8-fallback.onnx"),
        dict(name=f"ORT int8 (fallback, top-1 >= 0.99: {len(strict.float_layers)} float layers)", backend=ort, path=work / "int8-strict.onnx"),
        dict(name="OpenVINO fp32 (hint f32)", backend=ov, path=fp32_ir, options={"precision_hint": "f32"}),
        dict(name="OpenVINO fp32 (no hint: runtime default)", backend=ov, path=fp32_ir, options={"precision_hint": "default"}),
        dict(name="OpenVINO fp16 weights (hint f32)", backend=ov, path=fp16_ir, options={"precision_hint": "f32"}),
        dict(name=f"OpenVINO int8 (NNCF {notes['nncf']['model_type']}, SmoothQuant)", backend=ov, path=work / "ov-int8" / "model.xml", options={"precision_hint": "f32"}),
        dict(name=f"OpenVINO int8 (NNCF {notes['nncf_no_sq']['model_type']}, no SmoothQuant)", backend=ov, path=work / "ov-int8-nosq" / "model.xml", options={"precision_hint": "f32"}),
    ]
    return variants, notes


def measure(variants: list[dict], inputs: np.ndarray, teacher_logits, threads: int | None, iterations: int) -> list[dict]:
    rows, reference = [], None
    for variant in variants:
        with get_backend(variant["backend"]).runner(variant["path"], threads=threads, **variant.get("options", {})) as runner:
            outputs = run_all(runner, inputs)
            reference = reference or outputs  # the first variant is ORT fp32
            stats = measure_latency(runner, {"input": inputs[:1]}, warmup=10, iterations=iterations)
            rows.append({"name": variant["name"], **fidelity(outputs, reference, teacher_logits), "p50_ms": stats.p50,
                         "p90_ms": stats.p90, "settings": runner.runtime_settings()})
        print(f"{rows[-1]['name']:70s} p50 {stats.p50:7.2f} ms  cosine {rows[-1]['cosine_vs_fp32']:.5f}", flush=True)
    return rows


def markdown(rows: list[dict], host: dict, command: str, notes: dict) -> str:
    base = rows[0]["p50_ms"]
    fmt = lambda v, spec: "n/a" if v is None else format(v, spec)  # noqa: E731
    lines = [
        f"Measured {dt.date.today().isoformat()} on {host['cpu_model']} ({host['cores_logical']} logical cores, ISA: {', '.join(host['isa'])}), "
        f"{host['os']}; " + ", ".join(f"{k} {v}" for k, v in host["versions"].items() if k in ("onnxruntime", "openvino", "nncf", "torch", "timm")) + ".",
        f"Command: `{command}`. Batch 1, p50 of the timed runs; fidelity on {rows[0]['samples']} evaluation views vs ORT fp32.",
        "",
        "| backend / precision | cosine vs fp32 | top-1 vs fp32 | p50 ms | p50 vs ORT fp32 | precision the runtime used |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        used = r["settings"].get("INFERENCE_PRECISION_HINT") or "fp32 / QDQ int8 (ORT CPU EP)"
        lines.append(f"| {r['name']} | {fmt(r['cosine_vs_fp32'], '.5f')} | {fmt(r['top1_agreement_vs_fp32'], '.3f')} | {r['p50_ms']:.2f} | "
                     f"{r['p50_ms'] / base:.2f}x | {used} |")
    fb = notes["fallback"]
    lines += ["", f"Fallback, target budget: {fb['target budget']['float_layers'] or 'no layer'} kept in float "
              f"(plain int8 on the selection views: {fb['target budget']['plain_int8']}).",
              f"Fallback, strict budget (top-1 >= 0.99, cosine >= 0.999): {len(fb['strict budget']['float_layers'])} layers in float "
              f"(within budget: {fb['strict budget']['within_budget']}): {fb['strict budget']['float_layers']}."]
    return "\n".join(lines)


def write_doc(table: str) -> None:
    text = DOC.read_text() if DOC.is_file() else f"# Backends\n\n{START}\n{END}\n"
    head, _, rest = text.partition(START)
    _, _, tail = rest.partition(END)
    DOC.write_text(f"{head}{START}\n{table}\n{END}{tail}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--build", type=Path, default=ROOT / "runs" / "bench-backends")
    parser.add_argument("--steps", type=int, default=60, help="distillation steps when the build is made here")
    parser.add_argument("--iterations", type=int, default=100)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--no-doc", action="store_true", help="print the table, leave docs/backends.md alone")
    args = parser.parse_args()
    ensure_build(args.build, args.steps)
    target = load_target("x86-cpu")
    variants, notes = make_variants(args.build, args.build / "backend_table", target)
    evalset = args.build / "eval"
    inputs = np.load(evalset / "inputs.npy")
    teacher = np.load(evalset / "teacher_logits.npy") if (evalset / "teacher_logits.npy").is_file() else None
    rows = measure(variants, inputs, teacher, args.threads, args.iterations)
    command = "python benchmarks/backend_table.py" + (f" --build {args.build}" if args.build != ROOT / "runs" / "bench-backends" else "")
    table = markdown(rows, describe_host(), command, notes)
    (args.build / "backend_table.json").write_text(json.dumps({"rows": rows, "notes": notes}, indent=2, default=str))
    print(table)
    if not args.no_doc:
        write_doc(table)
        print(f"wrote {DOC}")


if __name__ == "__main__":
    main()
