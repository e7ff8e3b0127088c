"""The distilled student before step 3 (fine-tuning on labels), kept in BUILD/distilled/ once step 3 has run.

A finished build discards its training checkpoints, and step 3's settings key the student. Without this
copy, a second try at step 3 (other steps, rate or labels), or turning it off, would distil again from
scratch; with it, a run whose training is unchanged takes the kept student. Unchanged means the same
resume hash and world size and the same images by content (the resume hash knows a large source by its
names only), and distill.resume=false removes the copy with the checkpoints.
"""

from __future__ import annotations

import contextlib
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from safetensors.torch import load_file
from torch import nn

from ..artifacts import atomic_output, write_json_atomic
from ..models.student import HEADS_WEIGHTS, load_student, save_student
from ..progress import console
from . import distributed

DISTILLED = "distilled"
MADE_BY = "made_by.json"  # the training it came from: the resume hash and the world size


@dataclass
class StudentParts:
    backbone: nn.Module | None  # None on ranks other than 0
    heads: nn.Module | None  # the primary teacher's deployable head set (standardisation folded in)
    extra: dict  # further teachers' head sets, as heads.safetensors holds them
    spec: dict  # student.json
    train_log: Path | None  # train_log.csv of the training


def write_student(folder: Path, parts: StudentParts, classifier: nn.Module | None, spec: dict, made_by: dict | None = None) -> None:
    """A student folder, whole or not at all: its three files, the training's train_log.csv, and `made_by` when given."""
    with atomic_output(folder) as tmp:
        save_student(tmp, parts.backbone, parts.heads, classifier, spec, parts.extra)
        if parts.train_log is not None and parts.train_log.is_file():
            shutil.copy(parts.train_log, tmp / "train_log.csv")
        if made_by is not None:
            write_json_atomic(tmp / MADE_BY, made_by)


def keep_distilled(workdir: Path, parts: StudentParts, classifier: nn.Module | None, job, ctx) -> None:
    """Write the student as distilled, before step 3 changes it (rank 0)."""
    write_student(Path(workdir) / DISTILLED, parts, classifier, parts.spec, _made_by(job, ctx))


def distilled_student(workdir: Path, job, ctx) -> StudentParts | None:
    """The kept student when this run would train the same one (on every rank: all agree), else None."""
    folder = Path(workdir) / DISTILLED
    matches = False
    with contextlib.suppress(OSError, ValueError):
        recorded = json.loads((folder / MADE_BY).read_text())  # first: a build without the folder stamps no images
        matches = recorded == _made_by(job, ctx)
    if not all(distributed.gather_objects(matches, ctx)):
        return None
    if not ctx.is_main:
        return StudentParts(None, None, {}, json.loads((folder / "student.json").read_text()), None)
    console.print(f"distill: taking the student kept in {folder}, which these training settings distilled (no new distillation)")
    backbone, heads, _, spec = load_student(folder)  # the classifier is the teacher's, which the run has already
    extra = {k: v for k, v in load_file(str(folder / HEADS_WEIGHTS)).items() if k.startswith("extra_heads.")}
    spec.pop("classifier", None)  # save_student writes the classifier's description again
    return StudentParts(backbone, heads, extra, spec, folder / "train_log.csv")


def discard_distilled(workdir: Path) -> None:
    """distill.resume=false: train afresh, as without the copy."""
    shutil.rmtree(Path(workdir) / DISTILLED, ignore_errors=True)


def _made_by(job, ctx) -> dict:
    from ..data.source_stamp import source_stamp

    # a teacher cache's identity (all of cache.json) is in the resume hash already; image files by content here
    images = None if getattr(job.dataset, "meta", None) is not None else source_stamp(job.dataset.source)
    return {"config_hash": job.config_hash, "world": ctx.world, "images": images}
