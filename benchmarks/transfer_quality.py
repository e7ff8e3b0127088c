"""Does a task-oriented transfer set distil a better student for the task than a random one of the same size?

Task: Fashion-MNIST's four tops (T-shirt/top, pullover, coat, shirt), the classes that look most alike. Pool:
the first POOL Fashion-MNIST training images of all ten classes plus the bundled photos, unlabelled. Targets:
10 training images per task class, outside the pool. Two transfer sets of equal size come from the pool:
`retrieved`, the pool images nearest the targets in the teacher's embedding space (edgedistill transfer-set
--size, each target's nearest in rounds), and `random`, spread over the pool. The same student distils from each (teacher cache, then
the distill stage, same seed and steps), and a linear probe on its frozen features is scored on the task: it
trains on task images from the end of the training split (disjoint from pool and targets) and is tested on the
task images of the test split. Needs the Debian package dataset-fashion-mnist.

  EDGEDISTILL_NO_PROGRESS=1 PYTHONPATH=. python benchmarks/transfer_quality.py   # CPU, about 15 min
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import timm
import torch
from PIL import Image

from edgedistill.config import load_config
from edgedistill.data.sample_photos import bundled_photo_paths
from edgedistill.data.sources import spread_subset
from edgedistill.distill import stage
from edgedistill.distill.cache import cache_teacher
from edgedistill.distill.transfer_set import build_transfer_set
from edgedistill.models.student import create_backbone, load_student, summary_token

sys.path.insert(0, str(Path(__file__).resolve().parent))
from distill_quality import fashion_mnist, features, probe, to_pil  # noqa: E402
from doc_markers import replace_between  # noqa: E402

DOC = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"
START, END = "<!-- transfer-quality:start -->", "<!-- transfer-quality:end -->"
TASK = {0: "T-shirt/top", 2: "Pullover", 4: "Coat", 6: "Shirt"}


def write_images(folder: Path, images: np.ndarray, names: list[str]) -> None:
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    for image, name in zip(images, names):
        Image.fromarray(image).save(folder / name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("runs/transfer_quality"))
    parser.add_argument("--pool", type=int, default=12000)
    parser.add_argument("--size", type=int, default=2000, help="images in each transfer set")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--probe-images", type=int, default=None, help="at most this many probe images to train and to test (smoke runs)")
    parser.add_argument("--no-doc", action="store_true")
    args = parser.parse_args()
    started = time.perf_counter()
    train_images, train_labels, test_images, test_labels = fashion_mnist()
    in_task = np.isin(train_labels, list(TASK))
    pool_dir = args.out / "pool"
    write_images(pool_dir, train_images[:args.pool], [f"{i:05d}.png" for i in range(args.pool)])
    for path in bundled_photo_paths():
        shutil.copy(path, pool_dir / path.name)
    target_rows = np.concatenate([np.flatnonzero((train_labels == c) & (np.arange(len(train_labels)) >= args.pool))[:10] for c in TASK])
    write_images(args.out / "targets", train_images[target_rows], [f"{i:05d}.png" for i in target_rows])
    probe_rows = np.flatnonzero(in_task & (np.arange(len(train_labels)) >= len(train_labels) - 6000))
    probe_rows = probe_rows[~np.isin(probe_rows, target_rows)]
    test_rows = np.flatnonzero(np.isin(test_labels, list(TASK)))[:2000]
    if args.probe_images:
        probe_rows, test_rows = probe_rows[:args.probe_images], test_rows[:args.probe_images]

    base = ["teacher.name=efficientnet_lite0.offline", "teacher.img_size=112", "student.name=vit_tiny_patch16_224",
            "student.img_size=64", "student.model_args={depth: 4, patch_size: 8}", "data.scale_min=0.35",
            f"distill.steps={args.steps}", "distill.batch_size=64", f"distill.warmup_steps={args.steps // 10}", "distill.lr=1e-3",
            "distill.checkpoint_every=0", "distill.log_every=50"] + args.overrides
    everything = sorted(str(p.resolve()) for p in pool_dir.iterdir())
    retrieved = build_transfer_set(load_config(None, base), str(pool_dir), str(args.out / "targets"), None,
                                   args.out / "retrieved.txt", size=args.size)  # what `transfer-set --size` writes
    if len(retrieved.paths) < args.size:
        raise SystemExit(f"retrieval kept {len(retrieved.paths)} images, fewer than --size {args.size}")
    sets = {"retrieved": retrieved.paths, "random": spread_subset(everything, args.size)}
    task_share = {}
    for name, paths in sets.items():
        (args.out / f"{name}.txt").write_text("\n".join(paths) + "\n")
        labels = [train_labels[int(Path(p).stem)] if Path(p).stem.isdigit() else -1 for p in paths]
        task_share[name] = float(np.isin(labels, list(TASK)).mean())

    probe_train = (to_pil(train_images[probe_rows]), train_labels[probe_rows])
    probe_test = (to_pil(test_images[test_rows]), test_labels[test_rows])
    rows = []
    for name in sets:
        overrides = base + [f"data.source={args.out / f'{name}.txt'}"]
        run_start = time.perf_counter()
        cache = cache_teacher(load_config(None, overrides), args.out / f"cache_{name}", augmentations=2)
        workdir = args.out / f"build_{name}"
        shutil.rmtree(workdir, ignore_errors=True)
        stage.run(load_config(None, overrides + [f"distill.cache={cache}"]), {}, workdir)
        backbone, _, _, spec = load_student(workdir / "student")
        fn = lambda x, b=backbone: summary_token(b, b.forward_features(x))  # noqa: E731
        accuracy = probe(features(fn, probe_train[0], spec["data_config"], torch.device("cpu")), probe_train[1],
                         features(fn, probe_test[0], spec["data_config"], torch.device("cpu")), probe_test[1])
        rows.append({"transfer set": name, "images": len(sets[name]), "task share": task_share[name], "accuracy": accuracy,
                     "seconds": round(time.perf_counter() - run_start, 1)})
        print(json.dumps(rows[-1]), flush=True)
    torch.manual_seed(0)
    cfg = load_config(None, base)
    random_init = create_backbone(cfg.student.name, cfg.student.img_size, dict(cfg.student.model_args)).eval()
    fn = lambda x: summary_token(random_init, random_init.forward_features(x))  # noqa: E731
    data_config = spec["data_config"]
    rows.append({"transfer set": "none (random-init student)", "images": 0, "task share": float("nan"),
                 "accuracy": probe(features(fn, probe_train[0], data_config, torch.device("cpu")), probe_train[1],
                                   features(fn, probe_test[0], data_config, torch.device("cpu")), probe_test[1]), "seconds": 0})
    lines = [f"- Date: {dt.date.today().isoformat()}; CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads); "
             f"torch {torch.__version__}, timm {timm.__version__}, Python {platform.python_version()}; {time.perf_counter() - started:.0f} s in all",
             f"- Pool {args.pool} Fashion-MNIST training images + {len(bundled_photo_paths())} photos; {len(target_rows)} targets; "
             f"probe: {len(probe_rows)} task images to train, {len(test_rows)} to test; {args.steps} steps of 64 at 64 px, K=2",
             f"- Command: `EDGEDISTILL_NO_PROGRESS=1 PYTHONPATH=. python {' '.join(['benchmarks/transfer_quality.py', *sys.argv[1:]])}`",
             "", "| transfer set | images | of the task's classes | probe accuracy on the task (4 classes) |", "|---|---:|---:|---:|"]
    share = lambda r: "" if r["images"] == 0 else f"{r['task share']:.1%}"  # noqa: E731
    lines += [f"| {r['transfer set']} | {r['images']} | {share(r)} | {r['accuracy']:.1%} |" for r in rows]
    table = "\n".join(lines)
    (args.out / "transfer_quality.json").write_text(json.dumps(rows, indent=2) + "\n")
    print(table)
    if not args.no_doc:
        replace_between(DOC, START, END, table)


if __name__ == "__main__":
    main()
