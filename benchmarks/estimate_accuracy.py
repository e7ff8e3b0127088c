"""Estimator accuracy on this CPU: learn the efficiency factor from one model, predict the others.

    .venv/bin/python benchmarks/estimate_accuracy.py [--threads 2] [--rounds 5] [--out DIR]

Exports (random-init, latency does not depend on weights) ViT-Tiny at 112 px (the default
student, used to learn), ViT-Small at 112 px, a 6-block ViT-Tiny at 224 px and EfficientNet-Lite0
at 224 px (the teacher's architecture) to ONNX, times each with ONNX Runtime fp32, and prints the
estimate's error for each. With --out it also writes estimated.json and measured.json, two bench
documents that `edgedistill report estimated.json measured.json` merges to show the error.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

MODELS = {  # name: (timm architecture, image size, extra kwargs)
    "vit_tiny_112": ("vit_tiny_patch16_224", 112, {}),
    "vit_small_112": ("vit_small_patch16_224", 112, {}),
    "vit_tiny_d6_224": ("vit_tiny_patch16_224", 224, {"depth": 6}),
    "efficientnet_lite0_224": ("efficientnet_lite0", 224, {}),
}


def export(name: str, folder: Path) -> Path:
    import timm
    import torch

    from edgedistill.export.onnx_export import export_onnx, simplify

    arch, size, kwargs = MODELS[name]
    extra = {"img_size": size} if arch.startswith("vit") else {}
    model = timm.create_model(arch, pretrained=False, num_classes=0, **extra, **kwargs).eval()
    torch.manual_seed(0)
    return simplify(export_onnx(model, [3, size, size], folder / f"{name}.onnx", ["embedding"]))


def bench_docs(result: dict) -> tuple[dict, dict]:
    """Two bench documents (estimated, measured) for the same rows, for `edgedistill report`."""
    from edgedistill.bench.host import describe_host

    base = {"schema": "edgedistill.bench/1", "host": describe_host(), "eval": {},
            "target": {"name": "x86-cpu", "device": "CPU", "min_cosine": 0.98, "min_top1_agreement": 0.9}}

    def row(r: dict, status: str) -> dict:
        p50 = r["estimated_p50_ms"] if status == "estimated" else r["measured_p50_ms"]
        return {"name": r["model"], "backend": "onnxruntime", "precision": "fp32", "device": "CPU", "status": status, "batch": 1,
                "latency_ms": {"p50": p50, "mean": p50}, "throughput_ips": round(1000 / p50, 2), "fidelity": None,
                "notes": f"efficiency {result['efficiency']} learned on {result['calibrated_on']}" if status == "estimated" else ""}

    others = [r for r in result["rows"] if r["model"] != result["calibrated_on"]]
    return ({**base, "build": {"dir": "estimate-accuracy/estimated"}, "artifacts": [row(r, "estimated") for r in others]},
            {**base, "build": {"dir": "estimate-accuracy/measured"}, "artifacts": [row(r, "measured") for r in others]})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--iterations", type=int, default=30)
    parser.add_argument("--calibrate", default="vit_tiny_112", choices=sorted(MODELS))
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    from edgedistill.bench.estimate.check import cross_check
    from edgedistill.bench.estimate.peaks import host_cpu
    from edgedistill.bench.host import describe_host

    peaks = host_cpu(describe_host(), cores=args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        paths = {name: export(name, Path(tmp)) for name in MODELS}
        others = [p for n, p in paths.items() if n != args.calibrate]
        result = cross_check(paths[args.calibrate], others, peaks, args.threads, rounds=args.rounds, iterations=args.iterations)
    print(f"peaks: {peaks.tflops_fp32} TFLOPS fp32, {peaks.bandwidth_gbs} GB/s ({peaks.source}); threads {args.threads}")
    print(f"efficiency learned on {result['calibrated_on']}: {result['efficiency']}")
    print(f"{'model':26} {'GFLOP':>7} {'MB':>7} {'roofline':>9} {'measured':>9} {'estimated':>9} {'error':>7}")
    for r in result["rows"]:
        print(f"{r['model']:26} {r['gflop']:7.3f} {r['mb_moved']:7.1f} {r['roofline_ms']:9.3f} {r['measured_p50_ms']:9.3f} {r['estimated_p50_ms']:9.3f} {r['error_pct']:+6.1f}%")
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        estimated, measured = bench_docs(result)
        (args.out / "estimated.json").write_text(json.dumps(estimated, indent=1))
        (args.out / "measured.json").write_text(json.dumps(measured, indent=1))
        (args.out / "result.json").write_text(json.dumps(result, indent=1))
        print(f"wrote {args.out}/estimated.json, measured.json (edgedistill report {args.out}/estimated.json {args.out}/measured.json)")


if __name__ == "__main__":
    main()
