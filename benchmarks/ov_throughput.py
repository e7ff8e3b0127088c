"""OpenVINO img/s three ways on one build's IRs, interleaved in one run -> the table in docs/benchmarking.md.

    python benchmarks/ov_throughput.py                      # builds runs/bench-backends first (a few minutes)
    python benchmarks/ov_throughput.py --build runs/demo    # reuse an `edgedistill build --target x86-cpu` folder

For each OpenVINO IR of the build (fp32, int8) and batch size, on the build's evaluation images:
  sync           one LATENCY-hint request at a time, batch x 1000 / mean latency (bench's figure before async)
  async          bench's own throughput entry: THROUGHPUT hint, OPTIMAL_NUMBER_OF_INFER_REQUESTS requests in flight
  benchmark_app  OpenVINO's tool, `-hint throughput` on the same IR and data shape, with the precision hint bench's
                 runner used (`-infer_precision`): the reference async should match
  benchmark_app at its default precision: bf16 on a CPU with AVX512-BF16 or AMX, which edgedistill's fp32 rows
                 never use, so comparing against that figure compares two precisions
Each round times all three in turn, so load on the host falls on all of them alike; the table gives each
one's median over the rounds and the ratios within a round's medians.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

from edgedistill.backends import get_backend
from edgedistill.bench.host import describe_host
from edgedistill.bench.latency import measure_latency
from edgedistill.bench.throughput import batch_of, sweep

sys.path.insert(0, str(Path(__file__).resolve().parent))
from backend_table import ensure_build  # noqa: E402  (same build as the backend table)
from doc_markers import replace_between  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "benchmarking.md"
START, END = "<!-- ov-throughput:start -->", "<!-- ov-throughput:end -->"
FIGURES = ("sync", "async", "benchmark_app", "benchmark_app_default")
FPS = re.compile(r"Throughput:\s*([0-9.]+)\s*FPS")


def benchmark_app(xml: Path, batch: int, shape: tuple, seconds: int, precision: str | None = None) -> float:
    """img/s from OpenVINO's benchmark_app (it prints FPS: frames, i.e. images, per second); `precision`: its
    -infer_precision, None for its default."""
    tool = shutil.which("benchmark_app") or str(Path(sys.executable).with_name("benchmark_app"))
    data_shape = "[" + ",".join(str(d) for d in (batch, *shape[1:])) + "]"
    cmd = [tool, "-m", str(xml), "-d", "CPU", "-hint", "throughput", "-t", str(seconds), "-data_shape", data_shape]
    cmd += ["-infer_precision", precision] if precision else []
    done = subprocess.run(cmd, capture_output=True, text=True)
    found = FPS.search(done.stdout)
    if done.returncode or found is None:
        raise RuntimeError(f"{' '.join(cmd)} exited {done.returncode} with no throughput: {(done.stdout + done.stderr)[-400:]}")
    return float(found.group(1))


def one_round(xml: Path, inputs: np.ndarray, batch: int, seconds: int) -> dict:
    runner = get_backend("openvino").runner(xml, device="CPU", threads=None)
    with runner:
        feeds = {"input": batch_of(inputs, batch)}
        stats = measure_latency(runner, feeds, warmup=5, iterations=10_000, time_budget_s=seconds)
        [entry] = sweep(runner, inputs, [batch], warmup=5, iterations=10_000, time_budget_s=seconds)
        precision = runner.runtime_settings()["INFERENCE_PRECISION_HINT"]  # what the latency and throughput compiles ran
    if entry.get("mode") != "async":
        raise RuntimeError(f"bench's throughput entry for {xml} was not async: {entry}")
    return {"sync": batch * 1000.0 / stats.mean, "async": entry["throughput_ips"],
            "benchmark_app": benchmark_app(xml, batch, inputs.shape, seconds, precision),
            "benchmark_app_default": benchmark_app(xml, batch, inputs.shape, seconds), "precision": precision,
            "streams": entry.get("streams"), "nireq": entry.get("nireq")}


def measure(build: Path, batches: list[int], rounds: int, seconds: int) -> list[dict]:
    manifest = json.loads((build / "manifest.json").read_text())
    inputs = np.load(build / manifest["artifacts"]["evalset"]["path"] / "inputs.npy")
    rows = []
    for name, artifact in sorted(manifest["artifacts"].items()):
        if artifact.get("kind") != "openvino-ir":
            continue
        for batch in batches:
            runs = []
            for r in range(rounds):
                runs.append(one_round(build / artifact["path"] / "model.xml", inputs, batch, seconds))
                print(f"{name} b{batch} round {r + 1}: " + ", ".join(f"{k} {runs[-1][k]:.1f}" for k in FIGURES), flush=True)
            median = {k: float(np.median([x[k] for x in runs])) for k in FIGURES}
            rows.append({"name": name, "batch": batch, **median, "precision": runs[-1]["precision"], "streams": runs[-1]["streams"],
                         "nireq": runs[-1]["nireq"],
                         "async_vs_sync": [x["async"] / x["sync"] for x in runs], "async_vs_app": [x["async"] / x["benchmark_app"] for x in runs]})
    if not rows:
        raise SystemExit(f"{build} has no OpenVINO IR: build it for a target with the openvino backend (x86-cpu)")
    return rows


def markdown(rows: list[dict], host: dict, command: str, rounds: int, seconds: int) -> str:
    span = lambda values: f"{min(values):.2f}–{max(values):.2f}×"  # noqa: E731  (the rounds' range, not one figure)
    lines = [
        f"Measured {dt.date.today().isoformat()} on {host['cpu_model']} ({host['cores_logical']} logical cores), {host['os']}; "
        + ", ".join(f"{k} {v}" for k, v in host["versions"].items() if k in ("openvino", "torch", "timm")) + ".",
        f"Command: `{command}`. {rounds} rounds of {seconds} s per figure, the four interleaved in each round; "
        "img/s is the median over the rounds, the ratios span the rounds. benchmark_app ran with `-hint throughput`, the same "
        "data shape and the precision hint bench's runner used (`-infer_precision`), then once more at its own default.",
        "",
        "| IR | batch | precision hint | sync img/s (1 request) | async img/s (bench) | benchmark_app img/s | async / sync | "
        "async / benchmark_app | streams / requests | benchmark_app img/s, its default precision |",
        "|---|---:|---|---:|---:|---:|---:|---:|---|---:|",
    ]
    for r in rows:
        lines.append(f"| {r['name']} | {r['batch']} | {r['precision']} | {r['sync']:.1f} | {r['async']:.1f} | {r['benchmark_app']:.1f} | "
                     f"{span(r['async_vs_sync'])} | {span(r['async_vs_app'])} | {r['streams']} / {r['nireq']} | {r['benchmark_app_default']:.1f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--build", type=Path, default=ROOT / "runs" / "bench-backends")
    parser.add_argument("--steps", type=int, default=120, help="distill steps when the build is made here")
    parser.add_argument("--batches", default="1,8")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=4, help="timing budget of each figure (benchmark_app -t takes whole seconds)")
    parser.add_argument("--no-doc", action="store_true", help="print the table only")
    args = parser.parse_args()
    ensure_build(args.build, args.steps)
    rows = measure(args.build, [int(b) for b in args.batches.split(",")], args.rounds, args.seconds)
    command = "python " + " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]) if sys.argv[1:] else "python benchmarks/ov_throughput.py"
    table = markdown(rows, describe_host(), command, args.rounds, args.seconds)
    print(table)
    if not args.no_doc:
        replace_between(DOC, START, END, table)


if __name__ == "__main__":
    main()
