"""Distillation quality on real data, offline: linear-probe accuracy on Fashion-MNIST.

Teacher: the offline ImageNet EfficientNet-Lite0. Student: a small ViT. Transfer set (no labels
used): Fashion-MNIST training images plus the bundled photos. The teacher runs once, through the
teacher cache (K augmentations per image), and the student trains from the cache. Rows: logistic
regression (sklearn) on frozen features of the teacher, the distilled student (backbone summary
and the token head's embedding), and the same student at random initialisation.

  python benchmarks/distill_quality.py                  # CPU, a few minutes
  python benchmarks/distill_quality.py --large          # GPU: more images, steps and resolution
--large stores the augmented views in the cache (--store-views): the same views a seed-only cache
regenerates, so the same training, but the DataLoader decodes nothing (its 3000 steps of 256 views
at 224 px kept 14 workers busy for minutes on the H100 host). Features for the probe are taken on
the GPU when there is one.
Needs the Debian package dataset-fashion-mnist (/usr/share/datasets/fashion-mnist).
"""

from __future__ import annotations

import argparse
import datetime as dt
import gzip
import json
import platform
import shutil
import time
from pathlib import Path

import numpy as np
import timm
import torch
from PIL import Image

from edgedistill.config import load_config
from edgedistill.data.sample_photos import bundled_photo_paths
from edgedistill.distill import stage
from edgedistill.distill.cache import cache_teacher
from edgedistill.models.preprocess import preprocess_images
from edgedistill.models.student import create_backbone, load_student, summary_token
from edgedistill.models.teacher import create_teacher

FMNIST = Path("/usr/share/datasets/fashion-mnist")


def read_idx(name: str) -> np.ndarray:
    with gzip.open(FMNIST / name) as f:
        data = f.read()
    if data[2] == 0x08 and data[3] == 3:  # images: magic, count, rows, cols
        n, rows, cols = (int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(3))
        return np.frombuffer(data, np.uint8, offset=16).reshape(n, rows, cols)
    return np.frombuffer(data, np.uint8, offset=8)


def fashion_mnist() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(training images, their labels, test images, their labels) of the Debian package's Fashion-MNIST."""
    return (read_idx("train-images-idx3-ubyte.gz"), read_idx("train-labels-idx1-ubyte.gz"),
            read_idx("t10k-images-idx3-ubyte.gz"), read_idx("t10k-labels-idx1-ubyte.gz"))


def to_pil(images: np.ndarray) -> list[Image.Image]:
    return [Image.fromarray(img).convert("RGB") for img in images]


@torch.no_grad()
def features(fn, images: list[Image.Image], data_config: dict, device: torch.device, batch: int = 256) -> np.ndarray:
    out = []
    for i in range(0, len(images), batch):
        out.append(fn(torch.from_numpy(preprocess_images(images[i:i + batch], data_config)).to(device)).float().cpu().numpy())
    return np.concatenate(out)


def probe(train_x, train_y, test_x, test_y) -> float:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, C=0.5))
    model.fit(train_x, train_y)
    return float((model.predict(test_x) == test_y).mean())


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--large", action="store_true")
    parser.add_argument("--out", type=Path, default=Path("runs/distill_quality"))
    parser.add_argument("--store-views", action="store_true", help="store the views in the teacher cache (on with --large)")
    parser.add_argument("--workers", type=int, default=0, help="DataLoader workers for augmentation (use most cores on a GPU host)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="extra config overrides for cache and distillation, e.g. --set distill.standardize=phi-s")
    args = parser.parse_args()
    s = dict(transfer=3000, k=2, steps=300, batch=64, teacher_size=112, student_size=64, depth=4, patch=8, probe_train=3000, probe_test=2000, lr=1e-3)
    if args.large:
        s.update(transfer=20000, k=4, steps=3000, batch=256, teacher_size=224, student_size=112, depth=12, patch=16, probe_train=10000, probe_test=10000, lr=5e-4)
    args.store_views = args.store_views or args.large
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    args.out.mkdir(parents=True, exist_ok=True)
    train_images, train_labels, test_images, test_labels = fashion_mnist()
    transfer_dir = args.out / "transfer"
    shutil.rmtree(transfer_dir, ignore_errors=True)
    transfer_dir.mkdir()
    for i, img in enumerate(train_images[: s["transfer"]]):  # unlabelled transfer images
        Image.fromarray(img).save(transfer_dir / f"fmnist_{i:05d}.png")
    for path in bundled_photo_paths():
        shutil.copy(path, transfer_dir / path.name)
    overrides = [
        "teacher.name=efficientnet_lite0.offline", f"teacher.img_size={s['teacher_size']}",
        "student.name=vit_tiny_patch16_224", f"student.img_size={s['student_size']}", f"student.model_args={{depth: {s['depth']}, patch_size: {s['patch']}}}",
        f"data.source={transfer_dir}", "data.scale_min=0.35", f"distill.steps={s['steps']}", f"distill.batch_size={s['batch']}",
        f"distill.warmup_steps={s['steps'] // 10}", f"distill.lr={s['lr']}", "distill.checkpoint_every=0", "distill.log_every=25",
        f"distill.num_workers={args.workers}",
    ] + args.overrides
    started = time.perf_counter()
    cfg = load_config(None, overrides)
    cache_dir = cache_teacher(cfg, args.out / "teacher_cache", augmentations=s["k"], store_views=args.store_views)
    cache_s = time.perf_counter() - started
    print(f"cache built in {cache_s:.1f} s", flush=True)
    workdir = args.out / "build"
    shutil.rmtree(workdir, ignore_errors=True)
    artifact = stage.run(load_config(None, overrides + [f"distill.cache={cache_dir}"]), {}, workdir)
    train_s = time.perf_counter() - started - cache_s
    print(f"student trained in {train_s:.1f} s", flush=True)

    probe_train = (to_pil(train_images[-s["probe_train"]:]), train_labels[-s["probe_train"]:])  # disjoint from the transfer slice
    probe_test = (to_pil(test_images[: s["probe_test"]]), test_labels[: s["probe_test"]])
    teacher = create_teacher(cfg.teacher).to(device)
    backbone, heads, _, spec = load_student(workdir / "student")
    backbone, heads = backbone.to(device), heads.to(device)
    torch.manual_seed(0)
    random_backbone = create_backbone(cfg.student.name, cfg.student.img_size, dict(cfg.student.model_args)).eval().to(device)
    extractors = {
        "teacher EfficientNet-Lite0 (pooled features)": (lambda x: teacher.targets(x).token, teacher.data_config),
        "distilled student (backbone summary)": (lambda x: summary_token(backbone, backbone.forward_features(x)), spec["data_config"]),
        "distilled student (token-head embedding)": (lambda x: heads.token(summary_token(backbone, backbone.forward_features(x))), spec["data_config"]),
        "random-init student (backbone summary)": (lambda x: summary_token(random_backbone, random_backbone.forward_features(x)), spec["data_config"]),
    }
    rows = []
    for name, (fn, data_config) in extractors.items():
        row_start = time.perf_counter()
        train_x, test_x = features(fn, probe_train[0], data_config, device), features(fn, probe_test[0], data_config, device)
        rows.append({"features": name, "dim": int(train_x.shape[1]), "accuracy": probe(train_x, probe_train[1], test_x, probe_test[1]),
                     "seconds": round(time.perf_counter() - row_start, 1)})
        print(json.dumps(rows[-1]), flush=True)
    env = {"date": dt.date.today().isoformat(), "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu", "cpu_threads": torch.get_num_threads(),
           "torch": torch.__version__, "timm": timm.__version__, "python": platform.python_version(), "settings": s, "store_views": args.store_views, "overrides": args.overrides,
           "cache_s": round(cache_s, 1), "train_s": round(train_s, 1), "train": artifact.extra["train"]}
    lines = ["| features | dim | linear-probe accuracy |", "|---|---:|---:|"] + [f"| {r['features']} | {r['dim']} | {100 * r['accuracy']:.1f}% |" for r in rows]
    (args.out / "distill_quality.json").write_text(json.dumps({"env": env, "rows": rows}, indent=2) + "\n")
    (args.out / "distill_quality.md").write_text("\n".join(lines) + "\n")
    print(json.dumps(env))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
