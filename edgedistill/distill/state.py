"""Atomic training checkpoints for exact resume.

A checkpoint holds everything the next step depends on: module (backbone, heads), target
statistics, optimizer, scheduler, EMA, the RNG states, the step (which is the data position:
the sample stream is a pure function of the step) and the count of skipped images. It is
written to a temp file, fsynced and renamed, so a kill at any moment leaves the previous one.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import torch

from ..artifacts import temp_file
from ..errors import EdgedistillError

CHECKPOINT = "checkpoint.pt"


def rng_state() -> dict:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state()  # this rank's own GPU: a resume may see fewer devices
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        cuda = state["cuda"]
        if isinstance(cuda, list):  # older checkpoints kept every visible GPU's state
            cuda = cuda[min(torch.cuda.current_device(), len(cuda) - 1)]
        torch.cuda.set_rng_state(cuda)


def save_checkpoint(state_dir: Path, payload: dict) -> Path:
    state_dir.mkdir(parents=True, exist_ok=True)
    final = state_dir / CHECKPOINT
    fd, tmp = temp_file(final)  # clears what saves killed half-way left, never a live writer's
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(payload, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, final)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return final


def load_checkpoint(state_dir: Path, config_hash: str | tuple[str, ...], on_mismatch=None) -> dict | None:
    """The checkpoint in state_dir when it was made with the same config, else None (after calling
    `on_mismatch(step)` with the step of the checkpoint that does not fit)."""
    path = state_dir / CHECKPOINT
    if not path.is_file():
        return None
    try:
        payload = torch.load(path, map_location="cpu", weights_only=False)  # our own file: RNG states are not tensors
    except Exception as exc:  # torch raises RuntimeError, EOFError, UnpicklingError... for a truncated or foreign file
        raise EdgedistillError(f"the checkpoint {path} is damaged: {(str(exc).splitlines() or [type(exc).__name__])[0]}",
                               f"delete {state_dir} to start over, or set distill.resume=false") from exc
    if not isinstance(payload, dict):
        raise EdgedistillError(f"the checkpoint {path} is not an edgedistill checkpoint", f"delete {state_dir} to start over, or set distill.resume=false")
    if payload.get("config_hash") not in ((config_hash,) if isinstance(config_hash, str) else config_hash):
        if on_mismatch is not None:
            on_mismatch(payload.get("step"))
        return None
    if "norms" not in payload and "module" in payload:  # written when the target norms were part of the module, under the same key names
        payload["norms"] = {k: payload["module"].pop(k) for k in list(payload["module"]) if k.startswith("norms.")} or None
        for k in [k for k in payload.get("ema") or {} if k.startswith("module.norms.")]:  # EMA averaged them too
            del payload["ema"][k]
    return payload
