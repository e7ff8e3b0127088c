"""Zero-shot top-1 (bench.zero_shot_head): each artifact's `embedding` output against a zero-shot head
(distill/zero_shot_head.py) of the build's own open_clip teacher, scored on bench.eval_dir's labels.
An image's prediction is the row of highest cosine to its embedding (CLIP's zero-shot classification;
the logit scale does not change an argmax)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..config import BuildConfig
from ..errors import EdgedistillError, input_path

KEY = "bench.zero_shot_head"


@dataclass
class ZeroShot:
    weights: np.ndarray  # [C, D] unit rows
    rows: np.ndarray  # each labelled image's row of `weights`

    def top1(self, embedding: np.ndarray) -> float:
        scores = embedding.astype(np.float32) @ self.weights.T  # a positive scale per image leaves each argmax as it is
        return round(float((scores.argmax(1) == self.rows).mean()), 4)


def check_zero_shot_head(cfg: BuildConfig) -> dict:
    """The head's stamp, checked before any model is made (and without torch, so a build with nothing to do stays
    cheap): a head needs labelled images to score, a row for each of their classes, and the build's own teacher (a
    head of another text tower scores an embedding space the student never learned)."""
    from ..distill.text_embeddings import text_side
    from ..distill.zero_shot_head import read_stamp
    from ..teacher_identity import comparable_identities, teacher_identity
    from .labelled import list_labelled

    path = cfg.bench.zero_shot_head
    make = f"make one with `edgedistill zero-shot-head {cfg.bench.eval_dir or 'LABELLED_FOLDER'} {path}` (the same teacher config)"
    if not cfg.bench.eval_dir:
        raise EdgedistillError(f"{KEY} needs labelled images to score", "set bench.eval_dir to a folder with one subfolder per class")
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
    classes = list_labelled(cfg.bench.eval_dir, cfg.bench.eval_max_images)[2]
    missing = [c for c in classes if c not in stamp["classes"]]
    if missing:
        raise EdgedistillError(f"{KEY} '{path}' has no row for {len(missing)} class(es) of bench.eval_dir: {', '.join(missing[:5])}",
                               f"make it from the same folder: edgedistill zero-shot-head {cfg.bench.eval_dir} {path}")
    return stamp


def load_zero_shot(cfg: BuildConfig, classes: list[str], labels: np.ndarray, embedding_dim: int) -> ZeroShot:
    """The head, with each labelled image's row found by its class name; every class of the folder must have one."""
    from safetensors.numpy import load_file

    from ..distill.zero_shot_head import TENSOR

    stamp = check_zero_shot_head(cfg)
    path = cfg.bench.zero_shot_head
    try:
        weights = load_file(str(Path(path).expanduser()))[TENSOR]
    except Exception as exc:  # a header that reads, with its data cut short or its tensor renamed
        raise EdgedistillError(f"{KEY} '{path}' cannot be read ({type(exc).__name__}: {str(exc)[:120]})",
                               "make it again with edgedistill zero-shot-head") from exc
    if weights.shape != (len(stamp["classes"]), stamp.get("dim")):
        raise EdgedistillError(f"{KEY} '{path}' holds weights of shape {list(weights.shape)}, its stamp promises "
                               f"[{len(stamp['classes'])}, {stamp.get('dim')}]", "make it again with edgedistill zero-shot-head")
    if weights.shape[1] != embedding_dim:
        raise EdgedistillError(f"{KEY} '{path}' holds {weights.shape[1]}-d rows, the student's embedding is {embedding_dim}-d",
                               "make the head with the teacher this build distilled from")
    columns = np.asarray([stamp["classes"].index(name) for name in classes], dtype=np.int64)
    return ZeroShot(weights.astype(np.float32), columns[labels])
