"""Zero-shot classification in bench (bench.zero_shot_head): each artifact's `embedding` output against a
zero-shot head (distill/zero_shot_head.py) of the build's own open_clip teacher. An image's prediction is
the row of highest cosine to its embedding (CLIP's zero-shot classification; the logit scale does not
change an argmax). On the evaluation set, with no labels, the prediction is compared with the fp32
model's and the teacher's (as top-1 agreement compares a classifier's); on bench.eval_dir, with the
true labels (zero-shot top-1).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..config import BuildConfig
from ..errors import EdgedistillError, input_path

KEY = "bench.zero_shot_head"


def nearest_rows(embedding: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Each embedding's zero-shot class: its highest-cosine row (a positive scale per image leaves each argmax as it is)."""
    return (embedding.astype(np.float32) @ weights.T).argmax(1)


@dataclass
class ZeroShot:
    weights: np.ndarray  # [C, D] unit rows
    reference: np.ndarray  # the fp32 model's zero-shot class of each evaluation image
    teacher: np.ndarray | None = None  # the teacher's, from the evaluation set's teacher embeddings
    rows: np.ndarray | None = None  # each bench.eval_dir image's row of `weights`, when that folder is set

    def agreement(self, embedding: np.ndarray) -> dict:
        """On the evaluation set: the share of images whose zero-shot class is the fp32 model's, and the teacher's."""
        predicted = nearest_rows(embedding, self.weights)
        same = {"zero_shot_agreement_vs_fp32": float((predicted == self.reference).mean())}
        if self.teacher is not None:
            same["zero_shot_agreement_vs_teacher"] = float((predicted == self.teacher).mean())
        return same

    def top1(self, embedding: np.ndarray) -> float:
        """On bench.eval_dir: the share of images whose zero-shot class is their true class."""
        return round(float((nearest_rows(embedding, self.weights) == self.rows).mean()), 4)


def check_zero_shot_head(cfg: BuildConfig, classes: list[str] | None = None) -> dict:
    """The head's stamp, checked before any model is made (and without torch, so a build with nothing to do stays
    cheap): it needs the build's own teacher (a head of another text tower scores an embedding space the student
    never learned) and, with bench.eval_dir, a row for each of its classes (`classes`, when the caller has listed
    them; else listed here)."""
    from ..distill.text_embeddings import text_side
    from ..distill.zero_shot_head import read_stamp
    from ..teacher_identity import comparable_identities, teacher_identity
    from .labelled import list_labelled

    path = cfg.bench.zero_shot_head
    make = f"make one with `edgedistill zero-shot-head {cfg.bench.eval_dir or 'CLASSES'} {path}` (the same teacher config)"
    with input_path(KEY, path):
        file = Path(path).expanduser()
        if not file.is_file():
            raise EdgedistillError(f"{KEY} '{path}' does not exist or is not a file", make)
        stamp = read_stamp(file)
    if not stamp:
        raise EdgedistillError(f"{KEY} '{path}' holds no zero-shot head edgedistill can read", make)
    made_by, wanted = comparable_identities(text_side(stamp["teacher"]), text_side(teacher_identity(cfg.teacher)))  # the primary teacher
    if made_by != wanted:
        raise EdgedistillError(f"{KEY} '{path}' was made by teacher {made_by.get('name')!r}, not this build's primary teacher "
                               f"{wanted.get('name')!r}", make)
    if classes is None:
        classes = list_labelled(cfg.bench.eval_dir, cfg.bench.eval_max_images)[2] if cfg.bench.eval_dir else []
    missing = [c for c in classes if c not in stamp["classes"]]
    if missing:
        raise EdgedistillError(f"{KEY} '{path}' has no row for {len(missing)} class(es) of bench.eval_dir: {', '.join(missing[:5])}",
                               f"make it from the same folder: edgedistill zero-shot-head {cfg.bench.eval_dir} {path}")
    return stamp


def load_zero_shot(cfg: BuildConfig, reference: np.ndarray, teacher: np.ndarray | None = None,
                   labelled: tuple[list[str], np.ndarray] | None = None) -> ZeroShot:
    """The head, with the fp32 model's (`reference`, its embeddings of the evaluation set) and the teacher's predictions,
    and, given bench.eval_dir's (classes, labels), each labelled image's row found by its class name."""
    from safetensors.numpy import load_file

    from ..distill.zero_shot_head import TENSOR

    stamp = check_zero_shot_head(cfg, labelled[0] if labelled is not None else [])
    path = cfg.bench.zero_shot_head
    try:
        weights = load_file(str(Path(path).expanduser()))[TENSOR].astype(np.float32)
    except Exception as exc:  # a header that reads, with its tensor renamed or of another dtype
        raise EdgedistillError(f"{KEY} '{path}' cannot be read ({type(exc).__name__}: {str(exc)[:120]})",
                               "make it again with edgedistill zero-shot-head") from exc
    if weights.shape != (len(stamp["classes"]), stamp.get("dim")):
        raise EdgedistillError(f"{KEY} '{path}' holds weights of shape {list(weights.shape)}, its stamp promises "
                               f"[{len(stamp['classes'])}, {stamp.get('dim')}]", "make it again with edgedistill zero-shot-head")
    if weights.shape[1] != reference.shape[1]:
        raise EdgedistillError(f"{KEY} '{path}' holds {weights.shape[1]}-d rows, the student's embedding is {reference.shape[1]}-d",
                               "make the head with the teacher this build distilled from")
    rows = None
    if labelled is not None:
        classes, labels = labelled
        rows = np.asarray([stamp["classes"].index(name) for name in classes], dtype=np.int64)[labels]
    comparable = teacher is not None and teacher.shape[1:] == (weights.shape[1],)  # the teacher's summary token: its projected embedding
    return ZeroShot(weights, nearest_rows(reference, weights), nearest_rows(teacher, weights) if comparable else None, rows)
