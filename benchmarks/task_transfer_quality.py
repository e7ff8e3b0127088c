"""Task-oriented knowledge transfer (Vemulapalli et al.), all three steps, offline: does each step pay?

Task: Fashion-MNIST's ten classes with few labels, LABELLED per class from the training split (default 20,
200 in all). Unlabelled transfer set: IMAGES other training images (default 4000, disjoint from the labelled
ones). Scored: top-1 accuracy of each model's class output on TEST test-split images (default 2000).
- Step 1: the offline ImageNet EfficientNet-Lite0 teacher fine-tuned on the labels (`edgedistill finetune-teacher`).
- Labels alone: the student (a 4-block ViT-Tiny, /8 at 64 px) trained on the labels from random weights,
  with the fine-tuning loop, steps and batch step 3 uses, at the distillation's learning rate (1e-3: from
  random weights, step 3's 1e-4 would barely move it).
- Step 2: the student distilled from the fine-tuned teacher on the transfer set (teacher cache K=2), with the
  Proteus levels plus its task outputs (distill.logit_weight=1); scored through its deployed `logits` output.
- Step 2 without task outputs: Proteus levels alone, the same classifier on the token head.
- Steps 2 + 3: each of those, then fine-tuned on the labels (distill.finetune_labels). The first of them is
  made by `edgedistill build` (export, int8 quantization, OpenVINO, bench): each deployed artifact's task top-1
  on the same test images, as bench scores it (bench.eval_dir), is a row too.
Needs the Debian package dataset-fashion-mnist.

  EDGEDISTILL_NO_PROGRESS=1 PYTHONPATH=. python benchmarks/task_transfer_quality.py   # CPU, about 15 min
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
from edgedistill.distill import stage
from edgedistill.distill.cache import cache_teacher
from edgedistill.distill.finetune import FinetuneSettings, finetune, split_labelled
from edgedistill.distill.finetune_teacher import distill_settings, finetune_teacher
from edgedistill.distill.trainer import autocast_for
from edgedistill.models.checkpoint import load_weights
from edgedistill.models.deploy import load_deploy_model
from edgedistill.models.preprocess import resolve_data_config

sys.path.insert(0, str(Path(__file__).resolve().parent))
from distill_quality import fashion_mnist, features, to_pil  # noqa: E402
from doc_markers import replace_between  # noqa: E402
from transfer_quality import write_images  # noqa: E402

DOC = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"
START, END = "<!-- task-transfer-quality:start -->", "<!-- task-transfer-quality:end -->"
STUDENT = ["student.name=vit_tiny_patch16_224", "student.img_size=64", "student.model_args={depth: 4, patch_size: 8}"]
BATCH = 64  # distillation's and step 3's batch (distill.batch_size), and the labels-alone student's
STEP_2 = {"Proteus + task outputs (logit_weight=1)": ["distill.logit_weight=1"], "Proteus alone": []}


def write_labelled(root: Path, images: np.ndarray, labels: np.ndarray, per_class: int) -> np.ndarray:
    """The first `per_class` images of each class as root/class_<k>/<i>.png; returns their indices."""
    chosen = []
    for cls in range(10):
        picked = np.flatnonzero(labels == cls)[:per_class]
        write_images(root / f"class_{cls}", images[picked], [f"{i:05d}.png" for i in picked])
        chosen += picked.tolist()
    return np.asarray(chosen)


def top1(model_logits, images, labels, data_config) -> float:
    logits = features(model_logits, images, data_config, torch.device("cpu"))
    return float((logits.argmax(1) == labels).mean())


def seconds(row: dict) -> str:
    return "—" if row["seconds"] is None else f"{row['seconds']:.0f}"


def build(workdir: Path, sets: list[str], test_dir: Path) -> None:
    """`edgedistill build` for x86-cpu, benched on every test image (no cap) for task top-1; few timing runs."""
    from edgedistill.cli import main as edgedistill

    overrides = [*sets, f"bench.eval_dir={test_dir}", "bench.eval_max_images=100000", "bench.iterations=20", "bench.warmup=2"]
    if edgedistill(["build", "--target", "x86-cpu", "--out", str(workdir), *(a for s in overrides for a in ("--set", s))]) != 0:
        raise SystemExit(f"edgedistill build {workdir} failed")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("runs/task_transfer_quality"))
    parser.add_argument("--labelled", type=int, default=20, help="labelled training images per class")
    parser.add_argument("--images", type=int, default=4000, help="unlabelled Fashion-MNIST training images in the transfer set")
    parser.add_argument("--test", type=int, default=2000, help="Fashion-MNIST test images scored")
    parser.add_argument("--steps", type=int, default=300, help="distillation steps (of 64)")
    parser.add_argument("--finetune-steps", type=int, default=300, help="fine-tuning steps in steps 1 and 3 and for labels alone")
    parser.add_argument("--no-deploy", action="store_true", help="skip the build of the deployed artifacts")
    parser.add_argument("--no-doc", action="store_true")
    args = parser.parse_args()
    started = time.perf_counter()
    train_images, train_labels, test_images, test_labels = fashion_mnist()
    labels_dir = args.out / "labelled"
    shutil.rmtree(labels_dir, ignore_errors=True)
    labelled = write_labelled(labels_dir, train_images, train_labels, args.labelled)
    unlabelled = np.setdiff1d(np.arange(len(train_labels)), labelled)[-args.images:]  # from the split's end: none is labelled
    transfer = args.out / "transfer"
    write_images(transfer, train_images[unlabelled], [f"{i:05d}.png" for i in unlabelled])
    test = to_pil(test_images[:args.test]), test_labels[:args.test]
    test_dir = args.out / "test"  # the same images as class folders, for bench.eval_dir
    shutil.rmtree(test_dir, ignore_errors=True)
    for cls in range(10):
        picked = np.flatnonzero(test[1] == cls)
        write_images(test_dir / f"class_{cls}", test_images[picked], [f"{i:05d}.png" for i in picked])
    rows = []

    def row(name: str, accuracy: float, seconds: float | None, **extra) -> None:
        rows.append({"model": name, "test_top1": accuracy, "seconds": None if seconds is None else round(seconds, 1), **extra})
        print(json.dumps(rows[-1]), flush=True)

    # step 1: the teacher, fine-tuned on the labels
    clock = time.perf_counter()
    teacher_file = args.out / "teacher_ft.safetensors"
    teacher_cfg = load_config(None, ["teacher.img_size=112"])
    stamp = finetune_teacher(teacher_cfg, labels_dir, teacher_file, FinetuneSettings(steps=args.finetune_steps, holdout=0))
    teacher = timm.create_model(stamp["architecture"], num_classes=len(stamp["classes"]))
    load_weights(teacher, teacher_file)
    row("teacher: ImageNet EfficientNet-Lite0 fine-tuned on the labels (step 1)",
        top1(teacher.eval(), *test, resolve_data_config(teacher, 112)), time.perf_counter() - clock)

    # the student on the labels alone, from random weights
    clock = time.perf_counter()
    cfg = load_config(None, STUDENT)
    torch.manual_seed(0)
    scratch = timm.create_model("vit_tiny_patch16_224", img_size=64, depth=4, patch_size=8, num_classes=10)
    data_config = resolve_data_config(scratch, 64)
    finetune(scratch, scratch.get_classifier(), split_labelled(labels_dir, 0), data_config,
             FinetuneSettings(steps=args.finetune_steps, batch_size=BATCH, lr=1e-3), cfg.data, torch.device("cpu"),
             autocast_for(cfg.distill, torch.device("cpu")))
    row("student: labels alone (random init, no teacher)", top1(scratch.eval(), *test, data_config), time.perf_counter() - clock)

    # steps 2 and 3: one teacher cache of the fine-tuned teacher serves every student
    base = distill_settings(teacher_file.resolve(), stamp)[:-1] + STUDENT + [  # its --set lines, less logit_weight
        "data.scale_min=0.35", f"data.source={transfer}", f"distill.steps={args.steps}", f"distill.batch_size={BATCH}",
        f"distill.warmup_steps={args.steps // 10}", "distill.lr=1e-3", "distill.checkpoint_every=0", "distill.log_every=50"]
    clock = time.perf_counter()
    cache = cache_teacher(load_config(None, base), args.out / "cache", augmentations=2)
    cache_seconds = time.perf_counter() - clock
    for name, extra in STEP_2.items():
        for step_3 in (False, True):
            clock = time.perf_counter()
            workdir = args.out / f"build_{len(rows)}"
            shutil.rmtree(workdir, ignore_errors=True)
            tune = [f"distill.finetune_labels={labels_dir}", f"distill.finetune_steps={args.finetune_steps}", "distill.finetune_holdout=0"]
            sets = base + extra + [f"distill.cache={cache}"] + (tune if step_3 else [])
            deploy = step_3 and extra and not args.no_deploy  # the whole build once: the deployed artifacts' task top-1
            if deploy:
                build(workdir, sets, test_dir)
            else:
                stage.run(load_config(None, sets), {}, workdir)
            model, spec = load_deploy_model(workdir / "student")
            logits = lambda x, m=model: m(x)[1]  # noqa: E731
            label = f"student: {name}" + (", then fine-tuned on the labels (steps 2 + 3)" if step_3 else " (step 2)")
            row(label, top1(logits, *test, spec["data_config"]), time.perf_counter() - clock)
            if deploy:
                for artifact in json.loads((workdir / "bench" / "bench.json").read_text())["artifacts"]:
                    row(f"... deployed: {artifact['name']} (bench's task top-1)", artifact["fidelity"]["task_top1"], None)

    lines = [f"- Date: {dt.date.today().isoformat()}; CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads); "
             f"torch {torch.__version__}, timm {timm.__version__}, Python {platform.python_version()}; {time.perf_counter() - started:.0f} s in all "
             f"(teacher cache {cache_seconds:.0f} s)",
             f"- Labels: {args.labelled} Fashion-MNIST training images per class ({len(labelled)} in all); transfer set: {len(unlabelled)} other "
             f"training images, unlabelled, teacher cache K=2; distillation {args.steps} steps of {BATCH}; fine-tuning {args.finetune_steps} steps "
             f"(of 32 for the teacher, of {BATCH} for the students); "
             f"scored on {len(test[1])} Fashion-MNIST test images",
             f"- Command: `EDGEDISTILL_NO_PROGRESS=1 PYTHONPATH=. python {' '.join(['benchmarks/task_transfer_quality.py', *sys.argv[1:]])}`",
             "- The build row's seconds include its export, quantization and bench; its deployed rows are bench's `task_top1` on "
             "the same test images",
             "", "| model | test top-1 | seconds |", "|---|---:|---:|"]
    lines += [f"| {r['model']} | {r['test_top1']:.1%} | {seconds(r)} |" for r in rows]
    table = "\n".join(lines)
    (args.out / "task_transfer_quality.json").write_text(json.dumps({"rows": rows}, indent=2) + "\n")
    print(table)
    if not args.no_doc:
        replace_between(DOC, START, END, table)


if __name__ == "__main__":
    main()
