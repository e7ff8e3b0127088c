"""Pool embeddings kept between transfer-set runs: embedding a large pool is the slow part, and one pool serves
many tasks. A file is reused only for the same teacher (teacher_identity.teacher_identity: name, weights, size, model_args,
dtype) and the same images in the same order at the same byte sizes (ImageSource.fingerprint); otherwise the
pool is embedded again and the file replaced. float32, 4·D bytes per image, so a reused run gives the same list."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np

from ..artifacts import atomic_output, safetensors_stamp, save_safetensors
from ..data.images import ImageSource

FORMAT = "edgedistill.pool-embeddings/1"


def stamp_of(teacher_config, pool: ImageSource) -> dict:
    from ..teacher_identity import teacher_identity

    # fingerprint: names relative to the pool and sizes (an edit); where: the absolute files (another folder of the same names)
    where = hashlib.sha256("\n".join(os.path.abspath(p) for p in pool.paths).encode(errors="surrogateescape")).hexdigest()[:16]
    return {"format": FORMAT, "teacher": teacher_identity(teacher_config), "images": pool.fingerprint(), "files": where, "count": len(pool)}


def check_replaceable(path: Path, transfer_set: Path, pool: str, targets: str) -> None:
    """`path` may be replaced only when it is missing or holds pool embeddings: a typo naming the pool list or a
    model's .safetensors would otherwise be overwritten. Readable is enough here; load_matching says if it fits."""
    from ..output_files import check_replaceable as check

    check(path, "pool embeddings", {"the transfer set": transfer_set, "the pool": pool, "the targets": targets},
          lambda p: _stored_stamp(p).get("format") == FORMAT, "runs/pool.safetensors")


def _stored_stamp(path: Path) -> dict:
    return safetensors_stamp(path, "edgedistill")


def load_matching(path: Path, stamp: dict) -> tuple[tuple[np.ndarray, np.ndarray] | None, str]:
    """((readable rows, embeddings), "") when `path` holds this pool's embeddings by this teacher, else (None, why not).
    A file that holds no pool embeddings never gets here (check_replaceable refused it)."""
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    if not path.is_file():
        return None, "none kept yet"
    stored = _stored_stamp(path)
    if stored.get("teacher") != stamp["teacher"]:
        return None, "they were made by another teacher"
    if any(stored.get(key) != stamp[key] for key in ("images", "files", "count")):
        return None, "the pool's images or their place changed since"
    try:
        tensors = load_file(str(path))
        return (tensors["rows"], tensors["embeddings"]), ""
    except (SafetensorError, OSError, ValueError, KeyError) as exc:  # damaged tensors behind a readable header: embed again
        return None, f"the file cannot be read ({type(exc).__name__})"


def save(path: Path, stamp: dict, rows: np.ndarray, embeddings: np.ndarray) -> None:
    import torch

    with atomic_output(path) as tmp:
        save_safetensors({"rows": torch.from_numpy(rows), "embeddings": torch.from_numpy(embeddings)}, tmp,
                         metadata={"edgedistill": json.dumps(stamp)})
