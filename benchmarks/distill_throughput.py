"""Distillation throughput: images/s and model FLOPs utilisation (MFU) of the training step.

Modes, all in one run on the same models:
  naive-fp32        fp32 eager; teacher and student both run every step; plain torch AdamW
  online-bf16       the engine's step (distill.trainer.step_loss): bf16 autocast, fused AdamW, PHI-S targets
                    (naive uses the same SDPA attention: timm's default)
  cached-bf16       the same step with teacher targets from a cache (fp16, copied from pinned memory)
  online-compiled   online-bf16 with torch.compile on the student step and the teacher
  cached-compiled   cached-bf16 with torch.compile on the student step
  online-overlap    online-bf16 with the teacher one batch ahead on a side stream (distill.overlap_teacher)
  online-compiled-overlap  the same, compiled
  teacher-bf16      the online teacher's forward alone (bf16 autocast), to split the online step's time
  teacher-compiled  the same, compiled
--teacher-dtype bf16 holds the frozen teacher's weights in bf16, as teacher.dtype=bf16 does (no per-step weight casts).
--profile writes the top CUDA kernels of the last online mode (torch.profiler) to profile_<mode>.txt.
Views are synthetic tensors already on the device, so the figures are the model-side ceiling
(decoding and augmentation run in DataLoader workers and scale with CPU cores).
FLOPs per step are counted once per mode with torch.utils.flop_counter.FlopCounterMode.

  python benchmarks/distill_throughput.py                 # CUDA: ViT-S/16 student, ViT-L/14 teacher, 224
  python benchmarks/distill_throughput.py --tiny          # CPU smoke run with tiny models
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import sys
import time
import traceback
from pathlib import Path

import timm
import torch
from torch.utils.flop_counter import FlopCounterMode

from edgedistill.config import DistillConfig, TeacherConfig
from edgedistill.distill.module import DistillModule
from edgedistill.distill.prefetch import prefetch
from edgedistill.distill.standardize import TargetStandardizer, TeacherNorms
from edgedistill.distill.targets import CachedTargets, OnlineTargets
from edgedistill.distill.teacher_ahead import teacher_ahead
from edgedistill.distill.trainer import WITHOUT_CUDA_GRAPHS, TrainJob, autocast_for, build_optimizer, compile_models, objective_for, step_loss
from edgedistill.models.heads import ProteusHeads
from edgedistill.models.student import create_backbone, probe_student
from edgedistill.models.teacher import create_teacher, hold_for_distillation
from edgedistill.models.preprocess import resolve_data_config

FLOPS: dict[str, int] = {}  # FLOPs per training step, by mode kind (naive / online / cached)
# dense bf16 tensor-core peaks, FLOP/s; the first name found in the device name wins, so the
# PCIe and NVL H100s (lower clocks) come before the SXM default
PEAK_BF16 = {"H100 PCIe": 756e12, "H100 NVL": 835e12, "H100": 989e12, "H200": 989e12, "A100": 312e12}


def peak_flops(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((v for k, v in PEAK_BF16.items() if k in name), None)


def build(args, device):
    torch.manual_seed(0)
    teacher = create_teacher(TeacherConfig(name=args.teacher, pretrained=False, img_size=args.teacher_size, model_args=args.teacher_args)).to(device)
    backbone = create_backbone(args.student, args.size, args.student_args)
    probe = probe_student(backbone, args.size)
    module = DistillModule(backbone, ProteusHeads(probe["dim"], teacher.dim, teacher.patch_dim, probe["summary_dim"])).to(device).train()
    return teacher, module, probe, resolve_data_config(backbone, args.size)


def reset_peak_memory(device) -> None:
    """Each row's peak_mem_gb is then its own mode's, not the largest of the modes before it."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def run_mode(name, args, device, teacher, module, probe, data_config, cfg: DistillConfig, cached: bool, naive: bool, norms=None):
    reset_peak_memory(device)
    views = torch.rand(args.batch, 3, args.view, args.view, device=device)
    online = OnlineTargets([teacher])
    with torch.no_grad(), autocast_for(cfg, device):
        stored = online({}, views)[0]
    pin = device.type == "cuda"
    store = {"t0.token": stored.token.half().cpu(), "t0.patches": stored.patches.half().cpu()}
    store = {k: v.pin_memory() if pin else v for k, v in store.items()}
    job = TrainJob(module, None, CachedTargets([teacher.grid]) if cached else online, cfg, data_config, device, probe["n_patches"], probe["maskable"],
                   norms=None if naive else norms)
    job.targets.to(device)
    optimizer = torch.optim.AdamW(module.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay) if naive else build_optimizer(module, cfg, device)
    objective, autocast = objective_for(cfg, probe["maskable"]), autocast_for(cfg, device)

    def host_batches():  # what the DataLoader hands over: cached targets in pinned host memory
        while True:
            yield {"view": views, **store} if cached else {"view": views}

    batches = prefetch(host_batches(), device)  # the trainer's side-stream copy of the next batch
    if name.endswith("-overlap"):  # as the trainer does with distill.overlap_teacher
        batches = teacher_ahead(batches, online, device, autocast)

    def step(i):
        loss, _ = step_loss(module, job, next(batches), i, autocast, objective)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(module.parameters(), cfg.grad_clip)
        optimizer.step()
        return loss

    # overlap modes are counted on their own: one teacher forward per step is then checked, not assumed
    row = time_mode(name, args, device, step, kind="overlap" if name.endswith("-overlap") else name.split("-")[0])
    if args.profile and name == args.profile_mode:
        profile_step(step, args.out, name, device)
    return row


def run_teacher_mode(name, args, device, teacher, cfg: DistillConfig):
    """The teacher's forward alone, as the online step runs it: MFU of the frozen side of the step."""
    reset_peak_memory(device)
    views = torch.rand(args.batch, 3, args.view, args.view, device=device)
    online, autocast = OnlineTargets([teacher]), autocast_for(cfg, device)

    def step(i):
        with torch.no_grad(), autocast:
            online({}, views)

    return time_mode(name, args, device, step, kind="teacher")


def time_mode(name, args, device, step, kind: str) -> dict:
    """Warm up, count one step's FLOPs (once per kind), time args.steps steps, print and return the row.
    `step(i)` returns the loss, or None for a step without one."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    t0 = time.perf_counter()
    for i in range(args.warmup + (args.compile_warmup if "compiled" in name else 0)):
        step(i)
    sync()
    warm_s = time.perf_counter() - t0
    if kind not in FLOPS:  # counted in eager mode: compiling changes the kernels, not the FLOPs
        counter = FlopCounterMode(display=False)
        with counter:
            step(0)
        FLOPS[kind] = counter.get_total_flops()
    flops = FLOPS[kind]
    sync()
    start = time.perf_counter()
    for i in range(args.steps):
        loss = step(i)
    sync()
    elapsed = time.perf_counter() - start
    peak = peak_flops(device)
    row = {"mode": name, "images_per_s": args.steps * args.batch / elapsed, "step_ms": 1000 * elapsed / args.steps, "tflops_per_step": flops / 1e12,
           "achieved_tflops": flops * args.steps / elapsed / 1e12, "mfu": flops * args.steps / elapsed / peak if peak else None,
           "warmup_s": warm_s, "loss": loss.item() if loss is not None else float("nan"),
           "peak_mem_gb": torch.cuda.max_memory_allocated(device) / 1e9 if device.type == "cuda" else None}
    print(json.dumps(row), flush=True)
    return row


def profile_step(step, out: Path, name: str, device) -> None:
    """Top CUDA kernels of a few steps: where the online step's time goes."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        for i in range(3):
            step(i)
        if device.type == "cuda":
            torch.cuda.synchronize()
    sort = "cuda_time_total" if device.type == "cuda" else "cpu_time_total"
    (out / f"profile_{name}.txt").write_text(prof.key_averages().table(sort_by=sort, row_limit=40, max_name_column_width=90) + "\n")


def smoke_stage(out: Path) -> dict:
    """The whole distill stage once on this device (bf16, compile, checkpoints, standardisation) on tiny
    models and synthetic PNGs, so a broken engine shows before any timing."""
    import numpy as np
    from PIL import Image

    from edgedistill.config import load_config
    from edgedistill.distill import stage

    images = out / "smoke_images"
    images.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(6):
        Image.fromarray(rng.integers(0, 255, (80, 96, 3), dtype=np.uint8)).save(images / f"{i}.png")
    cfg = load_config(None, [
        "teacher.name=vit_tiny_patch16_224", "teacher.pretrained=false", "teacher.img_size=56", "teacher.model_args={depth: 2, patch_size: 14}",
        "student.name=vit_tiny_patch16_224", "student.img_size=64", "student.model_args={depth: 2}", f"data.source={images}",
        "distill.steps=6", "distill.batch_size=8", "distill.checkpoint_every=2", "distill.compile=true", "distill.standardize=running",
        "distill.tensorboard=false", "distill.num_workers=2",
    ])
    train = stage.run(cfg, {}, out / "smoke_build").extra["train"]
    print("SMOKE", json.dumps(train), flush=True)
    return train


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiny", action="store_true", help="tiny models for a CPU smoke run")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--compile-warmup", type=int, default=3)
    parser.add_argument("--no-compile", action="store_true")
    parser.add_argument("--modes", default="naive-fp32,online-bf16,cached-bf16,teacher-bf16,online-compiled,cached-compiled,teacher-compiled")
    parser.add_argument("--teacher-dtype", choices=["fp32", "bf16"], default="fp32", help="dtype of the frozen teacher's weights")
    parser.add_argument("--compile-mode", default="default", help="torch.compile mode of the compiled modes (distill.compile_mode)")
    parser.add_argument("--teacher-compile-mode", default=None, help="another torch.compile mode for the teacher alone (e.g. max-autotune-no-cudagraphs)")
    parser.add_argument("--profile", action="store_true", help="profile the last online mode that runs (torch.profiler)")
    parser.add_argument("--out", type=Path, default=Path("runs/distill_throughput"))
    parser.add_argument("--smoke-stage", action="store_true", help="first run the distill stage once on tiny models")
    parser.add_argument("--compile-on-cpu", action="store_true", help="with --tiny on a CPU, keep the compiled modes (to check a step's modes)")
    args = parser.parse_args()
    if args.smoke_stage:
        smoke_stage(args.out)
        # the smoke run compiled the same code objects at other shapes; without a reset the timed
        # models below would get dynamic-shape recompiles instead of the static graphs a real run builds
        torch._dynamo.reset()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if args.teacher_dtype == "bf16" and device.type != "cuda":
        parser.error("--teacher-dtype bf16 needs a CUDA device: this script runs bf16 autocast only there")
    args.student, args.size, args.student_args = "vit_small_patch16_224", 224, {}
    args.teacher, args.teacher_size, args.teacher_args = "vit_large_patch14_clip_224", 224, {}
    if args.tiny:
        args.student_args, args.size = {"depth": 2}, 64
        args.teacher, args.teacher_size, args.teacher_args = "vit_small_patch14_dinov2", 56, {"depth": 2}
        args.batch, args.steps, args.warmup = min(args.batch, 8), min(args.steps, 3), 1
        args.no_compile = args.no_compile or (device.type == "cpu" and not args.compile_on_cpu)
    args.view = max(args.size, args.teacher_size)
    teacher, module, probe, data_config = build(args, device)
    if args.teacher_dtype == "bf16":  # as distill does with teacher.dtype=bf16
        hold_for_distillation([teacher], [TeacherConfig(name=args.teacher, dtype="bf16")], bf16_autocast=device.type == "cuda")
    modes = args.modes.split(",")
    if args.no_compile:
        modes = [m for m in modes if "compiled" not in m]
    if args.teacher_dtype == "bf16" and "naive-fp32" in modes:  # fp32 arithmetic cannot take bf16 weights
        print("naive-fp32 left out: it runs without autocast, which bf16 teacher weights need", flush=True)
        modes.remove("naive-fp32")
    args.profile_mode = next((m for m in reversed(modes) if m.startswith("online")), None)
    args.out.mkdir(parents=True, exist_ok=True)
    bf16 = DistillConfig(amp="auto" if device.type == "cuda" else "fp32", lr=1e-4)
    fp32 = DistillConfig(amp="fp32", lr=1e-4)
    # the engine's default step standardises targets with PHI-S; fitted in the first warm-up step, then frozen as in training
    norms = TargetStandardizer([TeacherNorms(teacher.dim, teacher.patch_dim, "phi-s", estimate_batches=1)]).to(device)
    rows, failed = [], []
    compiled = False  # eager modes run first in the default order and must not see compiled models
    # as the engine does (trainer.teacher_compile_mode): the teacher never replays CUDA graphs
    teacher_mode = args.teacher_compile_mode or WITHOUT_CUDA_GRAPHS.get(args.compile_mode, args.compile_mode)
    for name in modes:
        if "compiled" in name and not compiled:
            compile_models(module, OnlineTargets([teacher]), args.compile_mode, teacher_mode)
            compiled = True
        try:
            if name.startswith("teacher"):
                rows.append(run_teacher_mode(name, args, device, teacher, bf16))
                continue
            rows.append(run_mode(name, args, device, teacher, module, probe, data_config, fp32 if name == "naive-fp32" else bf16,
                                 cached=name.startswith("cached"), naive=name == "naive-fp32", norms=norms))
        except Exception as exc:  # keep the other modes' figures (e.g. when a compiler is missing)
            print(f"mode {name} failed: {type(exc).__name__}: {str(exc)[:300]}", flush=True)
            traceback.print_exc()
            failed.append(name)
    base = next((r["images_per_s"] for r in rows if r["mode"] == "naive-fp32"), None)
    for r in rows:  # the teacher-only rows are parts of a step, not steps
        r["speedup_vs_naive"] = None if r["mode"].startswith("teacher") else r["images_per_s"] / base if base else None
    env = {"date": dt.date.today().isoformat(), "device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or platform.machine(),
           "torch": torch.__version__, "timm": timm.__version__, "cuda": torch.version.cuda, "python": platform.python_version(),
           "student": f"{args.student} {args.student_args} @{args.size}", "teacher": f"{args.teacher} {args.teacher_args} @{args.teacher_size} (random init, {args.teacher_dtype} weights)",
           "batch": args.batch, "steps": args.steps, "peak_flops": peak_flops(device),
           "compile_mode": args.compile_mode, "teacher_compile_mode": teacher_mode or args.compile_mode, "failed_modes": failed}
    (args.out / "distill_throughput.json").write_text(json.dumps({"env": env, "rows": rows}, indent=2) + "\n")
    lines = ["| mode | images/s | step ms | TFLOP/step | achieved TFLOP/s | MFU | × naive |", "|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        mfu = f"{100 * r['mfu']:.1f}%" if r["mfu"] is not None else "n/a"
        speedup = f"{r['speedup_vs_naive']:.2f}" if r["speedup_vs_naive"] else "n/a"
        lines.append(f"| {r['mode']} | {r['images_per_s']:.1f} | {r['step_ms']:.1f} | {r['tflops_per_step']:.2f} | {r['achieved_tflops']:.1f} | {mfu} | {speedup} |")
    (args.out / "distill_throughput.md").write_text(json.dumps(env) + "\n\n" + "\n".join(lines) + "\n")
    print(json.dumps(env))
    print("\n".join(lines))
    if failed or not rows:  # a session script must not record an empty or partial table as a passed step
        sys.exit(f"{len(failed)} of {len(modes)} modes failed ({', '.join(failed)})" if failed else "no mode ran")


if __name__ == "__main__":
    main()
