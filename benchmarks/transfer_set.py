"""Transfer-set retrieval on real data, offline: does `edgedistill transfer-set` pick images of the target task?

Pool: Fashion-MNIST test images spread over the 10 classes, plus the 12 bundled photos as off-task images
(labels are never shown to the retrieval). For each class in turn, the targets are a few Fashion-MNIST *training*
images of that class (not in the pool); the pool images nearest them in the teacher's embedding space are kept,
exactly as the command does (edgedistill.distill.embed + transfer_set.nearest_pool_images, the pool embedded once).
Precision is the share of kept images of the target class; choosing at random would get the class's pool share.

  python benchmarks/transfer_set.py                     # CPU, about a minute
  python benchmarks/transfer_set.py --pool 10000 --targets 20 --per-target 100
Needs the Debian package dataset-fashion-mnist (/usr/share/datasets/fashion-mnist).
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from edgedistill.bench.host import describe_host
from edgedistill.config import load_config
from edgedistill.data.images import ImageSource
from edgedistill.data.sample_photos import bundled_photo_paths
from edgedistill.data.sources import spread_subset
from edgedistill.distill.embed import embed_images
from edgedistill.distill.trainer import autocast_for, pick_device
from edgedistill.distill.transfer_set import nearest_pool_images
from edgedistill.models.teacher import create_primary_teacher

sys.path.insert(0, str(Path(__file__).resolve().parent))
from distill_quality import fashion_mnist  # noqa: E402
from doc_markers import replace_between  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "benchmarks.md"
START, END = "<!-- transfer-set:start -->", "<!-- transfer-set:end -->"
FMNIST = Path("/usr/share/datasets/fashion-mnist")
CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]


def write_pngs(folder: Path, images: np.ndarray) -> list[Path]:
    folder.mkdir(parents=True)
    paths = [folder / f"{i:05d}.png" for i in range(len(images))]
    for path, image in zip(paths, images):
        Image.fromarray(image).save(path)
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pool", type=int, default=2000, help="Fashion-MNIST test images in the pool")
    parser.add_argument("--targets", type=int, default=10, help="target images per class")
    parser.add_argument("--per-target", type=int, default=50)
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="config override, e.g. teacher.name=...")
    parser.add_argument("--no-doc", action="store_true", help="print the table only")
    args = parser.parse_args()
    if not (FMNIST / "t10k-images-idx3-ubyte.gz").is_file():
        raise SystemExit(f"Fashion-MNIST is not installed ({FMNIST}): apt-get install dataset-fashion-mnist")
    cfg = load_config(None, args.overrides)
    train_images, train_labels, test_images, test_labels = fashion_mnist()
    picks = np.asarray(spread_subset(list(range(len(test_images))), args.pool))
    pool_labels = np.concatenate([test_labels[picks], np.full(len(bundled_photo_paths()), -1)])  # -1: an off-task photo
    device = pick_device(cfg.distill.device)
    teacher = create_primary_teacher(cfg.teacher).to(device)
    run = dict(device=device, autocast=autocast_for(cfg.distill, device), batch_size=cfg.distill.batch_size, workers=cfg.distill.num_workers)
    with tempfile.TemporaryDirectory() as tmp:
        pool_paths = write_pngs(Path(tmp) / "pool", test_images[picks]) + bundled_photo_paths()
        list_file = Path(tmp) / "pool.txt"
        list_file.write_text("\n".join(str(p) for p in pool_paths) + "\n")
        started = time.perf_counter()
        pool_rows, pool_embeddings = embed_images(teacher, ImageSource(str(list_file)), label="pool", **run)
        embed_seconds = time.perf_counter() - started
        rows = []
        for cls, name in enumerate(CLASSES):
            chosen_train = np.flatnonzero(train_labels == cls)[:args.targets]
            target_paths = write_pngs(Path(tmp) / f"targets_{cls}", train_images[chosen_train])
            target_list = Path(tmp) / f"targets_{cls}.txt"
            target_list.write_text("\n".join(str(p) for p in target_paths) + "\n")
            _, target_embeddings = embed_images(teacher, ImageSource(str(target_list)), label=f"targets {name}", **run)
            chosen, scores = nearest_pool_images(pool_embeddings, target_embeddings, args.per_target)
            labels = pool_labels[pool_rows[chosen]]
            in_pool = int((pool_labels == cls).sum())
            rows.append({"class": name, "kept": len(chosen), "precision": float((labels == cls).mean()),
                         "recall": float((labels == cls).sum() / in_pool), "random": in_pool / len(pool_labels),
                         "photos": int((labels == -1).sum())})
    env = describe_host()
    import faiss
    import timm

    versions = {"torch": torch.__version__, "timm": timm.__version__, "faiss": faiss.__version__, "Python": sys.version.split()[0]}
    gpu = f", {env['gpu']}" if env.get("gpu") else ""
    lines = [f"- Date: {dt.date.today().isoformat()}; teacher `{cfg.teacher.name}` on {device.type}; pool {len(pool_labels)} images "
             f"({args.pool} Fashion-MNIST test images + {len(bundled_photo_paths())} bundled photos); {args.targets} training images "
             f"per class as targets; {args.per_target} per target",
             f"- Hardware: {env['cpu_model']}, {env['cores_logical']} logical cores{gpu}; software: {', '.join(f'{k} {v}' for k, v in versions.items())}",
             f"- Pool embedding: {len(pool_labels) / embed_seconds:.0f} img/s ({embed_seconds:.1f} s)",
             f"- Command: `python {' '.join(['benchmarks/transfer_set.py', *sys.argv[1:]])}`",
             "",
             "| target class | kept | precision | random pick | recall | bundled photos kept |",
             "|---|---:|---:|---:|---:|---:|"]
    lines += [f"| {r['class']} | {r['kept']} | {r['precision']:.1%} | {r['random']:.1%} | {r['recall']:.1%} | {r['photos']} |" for r in rows]
    mean = np.mean([r["precision"] for r in rows])
    lines.append(f"| **mean** | | **{mean:.1%}** | {np.mean([r['random'] for r in rows]):.1%} | {np.mean([r['recall'] for r in rows]):.1%} | |")
    table = "\n".join(lines)
    print(table)
    if not args.no_doc:
        replace_between(DOC, START, END, table)


if __name__ == "__main__":
    torch.manual_seed(0)
    main()
