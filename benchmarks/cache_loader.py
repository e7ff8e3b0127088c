"""How fast the DataLoader feeds distillation: decoding + augmenting every view (the online teacher
path, and a teacher cache that regenerates views from seeds) against a cache that stores the views.

No model runs here: this is the input pipeline alone, the part distill_throughput.py leaves out.
Targets have the shapes of a ViT-L/14 teacher at 224 px (a one-block ViT-L writes the cache, so
the bytes per view are real); the images are real photos cycled to --count files.

  python benchmarks/cache_loader.py --out runs/cache_loader               # this machine's cores
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from edgedistill.config import load_config
from edgedistill.data.augment import AugmentedViews
from edgedistill.data.images import ImageSource
from edgedistill.data.sample_photos import bundled_photo_paths
from edgedistill.distill.cache import CachedViews, cache_teacher, read_cache

from distill_epoch import image_folder


def images_per_s(dataset, keys: list, batch: int, workers: int) -> float:
    """Steady delivery rate: the clock starts once the first batch is out (workers are up)."""
    loader = DataLoader(dataset, batch_size=batch, sampler=keys, num_workers=workers, prefetch_factor=4 if workers else None)
    count, start = 0, None
    for batch_ in loader:
        if start is None:
            start = time.perf_counter()
            continue
        count += batch_["view"].shape[0]
    if not count:  # the first batch only starts the clock
        raise SystemExit(f"{len(keys)} views make fewer than two batches of {batch}: raise --count or lower --batch")
    return count / (time.perf_counter() - start)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=768, help="images (one view each)")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--out", type=Path, default=Path("runs/cache_loader"))
    args = parser.parse_args()
    folder = image_folder(args.out, bundled_photo_paths(), args.count)
    # the caches are only this benchmark's input: built by the GPU when there is one, decoding in --workers processes
    # (in one process on the CPU they took 95% of the run, longer than a device call allows at 7168 images)
    cfg = load_config(None, ["teacher.name=vit_large_patch14_clip_224", "teacher.pretrained=false", "teacher.model_args={depth: 1}",
                             f"data.source={folder}", f"distill.batch_size={args.batch}", f"distill.num_workers={args.workers}"])
    caches = {stored: cache_teacher(cfg, args.out / f"cache-{'views' if stored else 'seeds'}", augmentations=1, store_views=stored)
              for stored in (False, True)}
    meta = read_cache(caches[False])
    views = AugmentedViews(ImageSource(str(folder)), meta["view_size"], cfg.data)
    regenerating = CachedViews(caches[False], views)
    entries = [(j, 0) for j in range(len(regenerating))]
    modes = {
        "online teacher (decode + augment)": (views, [(int(regenerating.index[j]), int(regenerating.seed[j])) for j, _ in entries]),
        "cache, views regenerated from seeds": (regenerating, entries),
        "cache, views stored (--store-views)": (CachedViews(caches[True], None), entries),
    }
    rows = []
    for name, (dataset, keys) in modes.items():
        rows.append({"mode": name, "images_per_s": images_per_s(dataset, keys, args.batch, args.workers)})
        print(json.dumps(rows[-1]), flush=True)
    base = rows[0]["images_per_s"]
    env = {"date": dt.date.today().isoformat(), "cpu": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(), "workers": args.workers,
           "torch": torch.__version__, "python": platform.python_version(), "images": args.count, "batch": args.batch, "view_size": meta["view_size"],
           "cache_mb": {("views" if k else "seeds"): round(sum(p.stat().st_size for p in v.rglob("*")) / 1e6) for k, v in caches.items()}}
    lines = ["| input pipeline | images/s | × online |", "|---|---:|---:|"] + [f"| {r['mode']} | {r['images_per_s']:.0f} | {r['images_per_s'] / base:.2f} |" for r in rows]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "cache_loader.json").write_text(json.dumps({"env": env, "rows": rows}, indent=2) + "\n")
    print(json.dumps(env))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
