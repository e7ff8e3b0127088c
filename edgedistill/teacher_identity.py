"""Which teacher made a file (a teacher cache, text embeddings, a zero-shot head, pool embeddings, a fine-tuned
checkpoint's stamp), in a form JSON stores and two runs compare. Torch-free: a build with nothing to do
checks its inputs' stamps without importing torch.
"""

from __future__ import annotations

import json
from pathlib import Path

from .artifacts import file_digest


def teacher_identity(c) -> dict:
    """What makes a teacher's outputs what they are (its loss weight does not), as JSON would store it.
    A checkpoint counts by its content: a teacher fine-tuned and saved under the same path is another teacher."""
    identity = {"name": c.name, "checkpoint": c.checkpoint, "pretrained": c.pretrained,
                "img_size": c.img_size, "model_args": dict(c.model_args), "dtype": c.dtype}
    if c.checkpoint and Path(c.checkpoint).expanduser().is_file():
        identity["checkpoint_sha256"] = file_digest(Path(c.checkpoint).expanduser())  # a ViT-L checkpoint takes seconds: read once
    return json.loads(json.dumps(identity))


def comparable_identities(recorded: dict, current: dict) -> tuple[dict, dict]:
    """Two teacher_identity records as they compare: by the checkpoint's content when both hashed it (the same
    file at another path, a copy or a relative spelling, is the same teacher), else by its path (older records
    did not hash it, and training from a cache or from text embeddings needs no teacher file on this machine)."""
    recorded, current = dict(recorded), dict(current)
    both_hashed = "checkpoint_sha256" in recorded and "checkpoint_sha256" in current
    for record in (recorded, current):
        record.pop("checkpoint" if both_hashed else "checkpoint_sha256", None)
    return recorded, current
