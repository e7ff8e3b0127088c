"""Pool embeddings kept between transfer-set runs: embedding a large pool is the slow part, and one pool serves
many tasks. A file is reused only for the same teacher (cache.teacher_identity: name, weights, size, model_args,
dtype) and the same images in the same order at the same byte sizes (ImageSource.fingerprint); otherwise the
pool is embedded again and the file replaced. float32, 4·D bytes per image, so a reused run gives the same list."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..artifacts import atomic_output, save_safetensors
from ..data.images import ImageSource

FORMAT = "edgedistill.pool-embeddings/1"


def stamp_of(teacher_config, pool: ImageSource) -> dict:
    from .cache import teacher_identity

    return {"format": FORMAT, "teacher": teacher_identity(teacher_config), "images": pool.fingerprint(), "count": len(pool)}


def load_matching(path: Path, stamp: dict) -> tuple[tuple[np.ndarray, np.ndarray] | None, str]:
    """((readable rows, embeddings), "") when `path` holds this pool's embeddings by this teacher, else (None, why not)."""
    from safetensors import SafetensorError, safe_open

    if not path.is_file():
        return None, "none kept yet"
    try:
        with safe_open(str(path), framework="numpy") as f:
            stored = json.loads((f.metadata() or {}).get("edgedistill", "{}"))
            if stored.get("format") != FORMAT:
                return None, "the file holds no pool embeddings"
            if stored.get("teacher") != stamp["teacher"]:
                return None, "they were made by another teacher"
            if stored.get("images") != stamp["images"] or stored.get("count") != stamp["count"]:
                return None, "the pool's images changed since"
            return (f.get_tensor("rows"), f.get_tensor("embeddings")), ""
    except (SafetensorError, OSError, ValueError, KeyError) as exc:  # damaged or foreign: embed again rather than fail
        return None, f"the file cannot be read ({type(exc).__name__})"


def save(path: Path, stamp: dict, rows: np.ndarray, embeddings: np.ndarray) -> None:
    import torch

    with atomic_output(path) as tmp:
        save_safetensors({"rows": torch.from_numpy(rows), "embeddings": torch.from_numpy(embeddings)}, tmp,
                         metadata={"edgedistill": json.dumps(stamp)})
