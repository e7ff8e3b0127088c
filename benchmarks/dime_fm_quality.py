"""Does DIME-FM's similarity loss carry the teacher's class structure into the student beyond Proteus alone?

Offline there is no CLIP text tower, so the stand-in for its text embeddings is a real one of the same kind:
the rows of the offline EfficientNet-Lite0 teacher's ImageNet-1k classifier, 1000 class vectors in the space
of its pooled embedding, as a CLIP zero-shot head holds 1000 prompt embeddings. Their logit scale is the
median of ‖t‖·‖w‖ over the transfer images, so cos·scale is on the scale of the teacher's own logits.

The same student distils four times from one teacher cache (same seed, steps, views): the Proteus levels
alone; Proteus plus DIME-FM's vl and pvl terms; DIME-FM with only the token level (its uni-modal term);
and, for comparison, Proteus plus classic task-output distillation (distill.logit_weight: KL to the
teacher's softmax through its own classifier, bias included, at T=1). Scored on held-out Fashion-MNIST test images, against the teacher on the same images:
- `logits top-1`: the deployed student's `logits` output (the teacher's classifier on its embedding, what
  the report's fidelity compares) picks the teacher's class;
- `zero-shot top-1`: the nearest class vector by cosine is the teacher's nearest;
- `KL`: KL(teacher ‖ student) of the zero-shot softmaxes over the 1000 classes;
- `probe`: a linear probe on the student's summary features, Fashion-MNIST's 10 classes.
Needs the Debian package dataset-fashion-mnist.

  EDGEDISTILL_NO_PROGRESS=1 PYTHONPATH=. python benchmarks/dime_fm_quality.py   # CPU, about 20 min
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
import torch.nn.functional as F

from edgedistill.artifacts import atomic_output
from edgedistill.config import load_config
from edgedistill.data.sample_photos import bundled_photo_paths
from edgedistill.distill import stage
from edgedistill.distill.cache import cache_teacher, teacher_identity
from edgedistill.distill.text_embeddings import TextEmbeddingsWriter, make_stamp
from edgedistill.models.deploy import load_deploy_model
from edgedistill.models.student import summary_token
from edgedistill.models.teacher import create_teacher, teacher_configs

sys.path.insert(0, str(Path(__file__).resolve().parent))
from distill_quality import fashion_mnist, features, probe, to_pil  # noqa: E402
from doc_markers import replace_between  # noqa: E402
from transfer_quality import write_images  # noqa: E402

DOC = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"
START, END = "<!-- dime-fm-quality:start -->", "<!-- dime-fm-quality:end -->"
RUNS = {
    "Proteus (token, patch, feature)": [],
    "Proteus + DIME-FM (vl, pvl)": ["TEXTS"],
    "DIME-FM (vl, pvl) + token level": ["TEXTS", "distill.patch_weight=0", "distill.feature_weight=0"],
    "Proteus + task outputs (logit KD, T=1)": ["distill.logit_weight=1"],
}


def class_vectors(teacher) -> torch.Tensor:
    linear = teacher.classifier[-1] if isinstance(teacher.classifier, torch.nn.Sequential) else teacher.classifier
    return linear.weight.detach().float()


def write_class_texts(path: Path, cfg, teacher, transfer_features: torch.Tensor) -> float:
    """The classifier's rows as a text-embeddings file; returns its logit scale (median ‖t‖·‖w‖)."""
    vectors = class_vectors(teacher)
    scale = float((transfer_features.norm(dim=1).median() * vectors.norm(dim=1).median()).item())
    stamp = make_stamp(teacher_identity(teacher_configs(cfg.teacher)[0]), scale, "imagenet-1k classifier rows of " + teacher.name,
                       vectors.shape[0], vectors.shape[1])
    with atomic_output(path) as tmp:
        writer = TextEmbeddingsWriter(tmp, stamp)
        writer.add(vectors)
        writer.close()
    return scale


def zero_shot(embeddings: torch.Tensor, vectors: torch.Tensor, scale: float) -> torch.Tensor:
    return F.normalize(embeddings, dim=1) @ F.normalize(vectors, dim=1).T * scale


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("runs/dime_fm_quality"))
    parser.add_argument("--images", type=int, default=4000, help="Fashion-MNIST training images in the transfer set (plus the photos)")
    parser.add_argument("--eval-images", type=int, default=2000, help="held-out Fashion-MNIST test images scored")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--probe-images", type=int, default=3000, help="Fashion-MNIST training images (from the split's end) the probe trains on")
    parser.add_argument("--no-doc", action="store_true")
    args = parser.parse_args()
    started = time.perf_counter()
    train_images, train_labels, test_images, test_labels = fashion_mnist()
    transfer = args.out / "transfer"
    write_images(transfer, train_images[:args.images], [f"{i:05d}.png" for i in range(args.images)])
    for path in bundled_photo_paths():
        shutil.copy(path, transfer / path.name)

    base = ["teacher.name=efficientnet_lite0.offline", "teacher.img_size=112", "student.name=vit_tiny_patch16_224",
            "student.img_size=64", "student.model_args={depth: 4, patch_size: 8}", "data.scale_min=0.35", f"data.source={transfer}",
            f"distill.steps={args.steps}", "distill.batch_size=64", f"distill.warmup_steps={args.steps // 10}", "distill.lr=1e-3",
            "distill.checkpoint_every=0", "distill.log_every=50"] + args.overrides
    cfg = load_config(None, base)
    teacher = create_teacher(teacher_configs(cfg.teacher)[0])
    device = torch.device("cpu")
    embed = lambda x: teacher.targets(x).token  # noqa: E731
    sample = to_pil(train_images[:min(args.images, 512)])
    scale = write_class_texts(args.out / "class_texts.safetensors", cfg, teacher,
                              torch.from_numpy(features(embed, sample, teacher.data_config, device)))
    vectors = class_vectors(teacher)

    eval_images, eval_labels = to_pil(test_images[:args.eval_images]), test_labels[:args.eval_images]
    teacher_embedding = torch.from_numpy(features(embed, eval_images, teacher.data_config, device))
    with torch.no_grad():
        teacher_logits = teacher.classifier(teacher_embedding)
    teacher_zero_shot = zero_shot(teacher_embedding, vectors, scale)
    probe_rows = np.arange(len(train_labels) - args.probe_images, len(train_labels))  # disjoint from the transfer set's first images
    probe_train = (to_pil(train_images[probe_rows]), train_labels[probe_rows])

    cache = cache_teacher(cfg, args.out / "cache", augmentations=2)
    rows = []
    for name, extra in RUNS.items():
        extra = [f"distill.text_embeddings={args.out / 'class_texts.safetensors'}" if e == "TEXTS" else e for e in extra]
        run_start = time.perf_counter()
        workdir = args.out / f"build_{len(rows)}"
        shutil.rmtree(workdir, ignore_errors=True)
        stage.run(load_config(None, base + extra + [f"distill.cache={cache}"]), {}, workdir)
        model, spec = load_deploy_model(workdir / "student")
        both = lambda x, m=model: torch.cat(m(x), 1)  # noqa: E731
        out = torch.from_numpy(features(both, eval_images, spec["data_config"], device))
        embedding, logits = out[:, :teacher_embedding.shape[1]], out[:, teacher_embedding.shape[1]:]
        student_zero_shot = zero_shot(embedding, vectors, scale)
        kl = F.kl_div(F.log_softmax(student_zero_shot, 1), F.log_softmax(teacher_zero_shot, 1), log_target=True, reduction="batchmean")
        summary = lambda x, b=model.backbone: summary_token(b, b.forward_features(x))  # noqa: E731
        accuracy = probe(features(summary, probe_train[0], spec["data_config"], device), probe_train[1],
                         features(summary, eval_images, spec["data_config"], device), eval_labels)
        rows.append({"run": name, "logits_top1": float((logits.argmax(1) == teacher_logits.argmax(1)).float().mean()),
                     "zero_shot_top1": float((student_zero_shot.argmax(1) == teacher_zero_shot.argmax(1)).float().mean()),
                     "kl": float(kl), "embedding_cosine": float(F.cosine_similarity(embedding, teacher_embedding).mean()),
                     "probe": accuracy, "seconds": round(time.perf_counter() - run_start, 1)})
        print(json.dumps(rows[-1]), flush=True)

    lines = [f"- Date: {dt.date.today().isoformat()}; CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads); "
             f"torch {torch.__version__}, timm {timm.__version__}, Python {platform.python_version()}; {time.perf_counter() - started:.0f} s in all",
             f"- Transfer set: {args.images} Fashion-MNIST training images + {len(bundled_photo_paths())} photos, teacher cache K=2; "
             f"{cfg.distill.steps} steps of {cfg.distill.batch_size} at {cfg.student.img_size} px; 'texts': the teacher's 1000 ImageNet class vectors, logit scale {scale:.1f}; "
             f"scored on {len(eval_images)} Fashion-MNIST test images; probe trained on {len(probe_rows)} others",
             f"- Command: `EDGEDISTILL_NO_PROGRESS=1 PYTHONPATH=. python {' '.join(['benchmarks/dime_fm_quality.py', *sys.argv[1:]])}`",
             "", "| run | logits top-1 = teacher's | zero-shot top-1 = teacher's | KL to the teacher's zero-shot | embedding cosine | probe (10 classes) |",
             "|---|---:|---:|---:|---:|---:|"]
    lines += [f"| {r['run']} | {r['logits_top1']:.1%} | {r['zero_shot_top1']:.1%} | {r['kl']:.3f} | {r['embedding_cosine']:.3f} | {r['probe']:.1%} |"
              for r in rows]
    table = "\n".join(lines)
    (args.out / "dime_fm_quality.json").write_text(json.dumps({"logit_scale": scale, "rows": rows}, indent=2) + "\n")
    print(table)
    if not args.no_doc:
        replace_between(DOC, START, END, table)


if __name__ == "__main__":
    main()
