"""`edgedistill finetune-teacher --head-init`: does starting the new classifier from a linear probe (LP-FT,
Kumar et al. 2022) beat timm's random init, with few labels? Offline, on real data.

Task: Fashion-MNIST's ten classes, LABELLED training images per class (default 5 and 20). Teacher: the offline
ImageNet EfficientNet-Lite0 at 112 px, fine-tuned whole by `finetune-teacher` (300 steps of 32, seeded), once
from a random head and once from a linear probe of its frozen features. Also scored: that linear probe alone
(the head before fine-tuning). Scored: top-1 of each on TEST test-split images (default 2000).
Needs the Debian package dataset-fashion-mnist.

  EDGEDISTILL_NO_PROGRESS=1 PYTHONPATH=. python benchmarks/head_init_quality.py   # CPU, about 20 min
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

from edgedistill.config import load_config
from edgedistill.distill.finetune import FinetuneSettings, split_labelled
from edgedistill.distill.finetune_teacher import finetune_teacher
from edgedistill.distill.probe_head import probe_head
from edgedistill.distill.trainer import autocast_for
from edgedistill.models.checkpoint import load_weights
from edgedistill.models.offline_teacher import load_offline_efficientnet_lite0
from edgedistill.models.preprocess import resolve_data_config

sys.path.insert(0, str(Path(__file__).resolve().parent))
from distill_quality import fashion_mnist, to_pil  # noqa: E402
from doc_markers import replace_between  # noqa: E402
from task_transfer_quality import top1, write_labelled  # noqa: E402

DOC = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"
START, END = "<!-- head-init-quality:start -->", "<!-- head-init-quality:end -->"
SIZE = 112


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("runs/head_init_quality"))
    parser.add_argument("--labelled", type=int, nargs="+", default=[5, 20], help="labelled training images per class (one run each)")
    parser.add_argument("--test", type=int, default=2000, help="Fashion-MNIST test images scored")
    parser.add_argument("--steps", type=int, default=300, help="fine-tuning steps (of 32)")
    parser.add_argument("--no-doc", action="store_true")
    args = parser.parse_args()
    train_images, train_labels, test_images, test_labels = fashion_mnist()
    test = to_pil(test_images[:args.test]), test_labels[:args.test]
    cfg = load_config(None, [f"teacher.img_size={SIZE}"])
    device = torch.device("cpu")
    rows = []
    for per_class in args.labelled:
        labels_dir = args.out / f"labelled_{per_class}"
        shutil.rmtree(labels_dir, ignore_errors=True)
        write_labelled(labels_dir, train_images, train_labels, per_class)
        # the probe alone: the head LP-FT starts from, on the frozen ImageNet backbone
        probe = load_offline_efficientnet_lite0()
        probe.reset_classifier(10)
        data_config = resolve_data_config(probe, SIZE)
        record = probe_head(probe, split_labelled(labels_dir, 0), data_config, device, autocast_for(cfg.distill, device), 32)
        rows.append({"labelled": per_class, "model": f"linear probe of the frozen teacher (C={record['probe_c']:g})",
                     "test_top1": top1(probe.eval(), *test, data_config), "seconds": None})
        print(json.dumps(rows[-1]), flush=True)
        for head_init in ("random", "probe"):
            clock = time.perf_counter()
            out = args.out / f"teacher_{per_class}_{head_init}.safetensors"
            stamp = finetune_teacher(cfg, labels_dir, out, FinetuneSettings(steps=args.steps, holdout=0), head_init)
            teacher = timm.create_model(stamp["architecture"], num_classes=10)
            load_weights(teacher, out)
            name = "fine-tuned from timm's random head" if head_init == "random" else "fine-tuned from the linear probe (LP-FT)"
            rows.append({"labelled": per_class, "model": name, "test_top1": top1(teacher.eval(), *test, data_config),
                         "seconds": round(time.perf_counter() - clock, 1)})
            print(json.dumps(rows[-1]), flush=True)
    (args.out / "head_init_quality.json").write_text(json.dumps({"rows": rows}, indent=2) + "\n")
    if not args.no_doc:
        write_doc(rows, args)


def write_doc(rows: list[dict], args) -> None:

    lines = [f"Measured {dt.date.today()} on {platform.processor() or platform.machine()} ({torch.get_num_threads()} threads), CPU; "
             f"torch {torch.__version__}, timm {timm.__version__}, Python {platform.python_version()}.",
             f"Command: `EDGEDISTILL_NO_PROGRESS=1 PYTHONPATH=. python benchmarks/head_init_quality.py` "
             f"({args.steps} steps of 32 each, {args.test} test images, seed 0).", "",
             "| labels per class | teacher (EfficientNet-Lite0, 112 px) | test top-1 |", "|---:|---|---:|"]
    lines += [f"| {r['labelled']} | {r['model']} | {100 * r['test_top1']:.1f}% |" for r in rows]
    replace_between(DOC, START, END, "\n".join(lines))


if __name__ == "__main__":
    main()
