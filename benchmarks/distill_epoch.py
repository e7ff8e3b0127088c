"""Per-epoch distillation time through the real stage: online teacher against the teacher cache.

distill_throughput.py times the model step alone on tensors already on the GPU. This script
times what a user waits for: `edgedistill distill` over a folder of real photos, with JPEG/PNG
decoding and timm augmentation in DataLoader workers, for one epoch, first with the teacher
running every step, then from a cache built by `cache-teacher` (K=1: one view per image) that
regenerates each view from its seed, then from one that stores the views (`--store-views`).

Images/s come from the stage's own train_log.csv. "steady" leaves out the steps before the
first log row (worker start-up, cuBLAS and allocator warm-up); "epoch" counts the whole epoch.

  python benchmarks/distill_epoch.py --workers 14 --out runs/epoch          # GPU: ViT-S/16 from ViT-L/14, 224 px
  python benchmarks/distill_epoch.py --tiny --out /tmp/epoch                  # CPU smoke run (tiny models)
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import os
import platform
import shutil
import time
from pathlib import Path

import timm
import torch

from edgedistill.config import load_config
from edgedistill.data.sample_photos import bundled_photo_paths
from edgedistill.distill import stage
from edgedistill.distill.cache import cache_teacher


def image_folder(out: Path, sources: list[Path], count: int) -> Path:
    """`count` files cycling through the source photos (hard links where possible: each is still decoded)."""
    folder = out / "epoch_images"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    for i in range(count):
        source = sources[i % len(sources)]
        target = folder / f"{i:06d}{source.suffix}"
        try:
            os.link(source, target)
        except OSError:
            shutil.copy(source, target)
    return folder


def rates(log_csv: Path, batch: int) -> dict:
    """Whole-epoch and steady images/s from the cumulative rates in the train log."""
    rows = [(int(r["step"]), float(r["images_per_s"])) for r in csv.DictReader(log_csv.read_text().splitlines())]
    (first_step, first_rate), (last_step, last_rate) = rows[0], rows[-1]
    first_t, last_t = first_step * batch / first_rate, last_step * batch / last_rate
    return {"epoch_images_per_s": last_rate, "epoch_s": last_t,
            "steady_images_per_s": (last_step - first_step) * batch / (last_t - first_t) if last_step > first_step else None}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiny", action="store_true", help="tiny models and few images, for a CPU smoke run")
    parser.add_argument("--images", type=Path, help="a folder of photos to cycle through (default: the bundled photos)")
    parser.add_argument("--count", type=int, default=8192, help="images in the epoch")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--workers", type=int, default=min(14, os.cpu_count() or 1))
    parser.add_argument("--out", type=Path, default=Path("runs/distill_epoch"))
    args = parser.parse_args()
    models = [
        "teacher.name=vit_large_patch14_clip_224", "teacher.pretrained=false",
        "student.name=vit_small_patch16_224", "student.img_size=224",
    ]
    if args.tiny:
        args.count, args.batch, args.workers = min(args.count, 64), min(args.batch, 8), min(args.workers, 2)
        models = [
            "teacher.name=vit_small_patch14_dinov2", "teacher.pretrained=false", "teacher.img_size=56", "teacher.model_args={depth: 2}",
            "student.name=vit_tiny_patch16_224", "student.img_size=64", "student.model_args={depth: 2}",
        ]
    sources = sorted(p for p in args.images.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png")) if args.images else bundled_photo_paths()
    args.out.mkdir(parents=True, exist_ok=True)
    folder = image_folder(args.out, sources, args.count)
    steps = args.count // args.batch
    log_every = max(1, steps // 4)
    overrides = models + [
        f"data.source={folder}", f"distill.steps={steps}", f"distill.batch_size={args.batch}", f"distill.num_workers={args.workers}",
        f"distill.log_every={log_every}", "distill.checkpoint_every=0", "distill.tensorboard=false", f"distill.warmup_steps={max(1, steps // 10)}",
    ]
    rows = []

    def timed_run(name: str, extra: list[str]) -> dict:
        workdir = args.out / f"build-{name}"
        shutil.rmtree(workdir, ignore_errors=True)
        started = time.perf_counter()
        stage.run(load_config(None, overrides + extra), {}, workdir)
        row = {"mode": name, "stage_s": time.perf_counter() - started, **rates(workdir / "student" / "train_log.csv", args.batch)}
        print(json.dumps(row), flush=True)
        rows.append(row)
        return row

    timed_run("online", [])
    builds = {}
    for name, stored in (("cached", False), ("cached-views", True)):
        started = time.perf_counter()
        cache_dir = cache_teacher(load_config(None, overrides), args.out / f"teacher_cache-{name}", augmentations=1, store_views=stored)
        builds[name] = {"build_s": round(time.perf_counter() - started, 1),
                        "gb": round(sum(p.stat().st_size for p in cache_dir.rglob("*") if p.is_file()) / 1e9, 2)}
        print(json.dumps({name: builds[name]}), flush=True)
        timed_run(name, [f"distill.cache={cache_dir}"])
    online = rows[0]
    device = "cuda" if torch.cuda.is_available() else "cpu"
    env = {"date": dt.date.today().isoformat(), "device": torch.cuda.get_device_name() if device == "cuda" else platform.processor() or platform.machine(),
           "cpu_count": os.cpu_count(), "workers": args.workers, "torch": torch.__version__, "timm": timm.__version__, "python": platform.python_version(),
           "images": args.count, "distinct_photos": len(sources), "batch": args.batch, "steps": steps, "models": models,
           "caches": builds}
    lines = ["| mode | epoch s | images/s (epoch) | images/s (steady) | × online per epoch | stage wall s |", "|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        steady = f"{r['steady_images_per_s']:.0f}" if r["steady_images_per_s"] else "n/a"
        r["epoch_speedup"] = online["epoch_s"] / r["epoch_s"]
        lines.append(f"| {r['mode']} | {r['epoch_s']:.1f} | {r['epoch_images_per_s']:.0f} | {steady} | {r['epoch_speedup']:.2f} | {r['stage_s']:.1f} |")
    (args.out / "distill_epoch.json").write_text(json.dumps({"env": env, "rows": rows}, indent=2) + "\n")
    (args.out / "distill_epoch.md").write_text(json.dumps(env) + "\n\n" + "\n".join(lines) + "\n")
    print(json.dumps(env))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
